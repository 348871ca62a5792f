import torch
from torch.utils.data import DataLoader

from spatial_ttt.tiny import tiny_model
from spatial_ttt.train import PackDataset, PackSampler, SFTEncoder, make_packs, pack_loss, read_records
from spatial_ttt.train.data import IGNORE_INDEX, collate_pack, estimate_lengths
from spatial_ttt.train.packing import answer_tokens, pad_rows

from .conftest import TINY_MODEL


def labelled_text(processor, example):
    ids = example["input_ids"][example["labels"] != IGNORE_INDEX]
    return processor.decode(ids, skip_special_tokens=False)


def test_labels_cover_answers_only(processor, make_config):
    cfg = make_config()
    encoder = SFTEncoder(processor, cfg)
    records = read_records(cfg.data_path, cfg.data_files)
    ex = encoder.encode(records[0])
    assert labelled_text(processor, ex) == "2<|im_end|>\n"
    n_video = int((ex["input_ids"] == 501).sum())
    assert n_video == int(ex["video_grid_thw"].prod()) // 4 == ex["pixel_values_videos"].shape[0] // 4
    assert (ex["mm_token_type_ids"] == 2).sum() == n_video
    text = processor.decode(ex["input_ids"], skip_special_tokens=False)
    assert text.startswith("<|im_start|>user\n<0.")  # no system turn, as the reference's SFT messages
    assert "<|vision_end|>How many chairs are in the room?<|im_end|>\n<|im_start|>assistant\n2" in text
    multi = encoder.encode(records[-1])
    assert labelled_text(processor, multi) == "2<|im_end|>\n1<|im_end|>\n"
    assert answer_tokens(multi) == int((multi["labels"] != IGNORE_INDEX).sum())


def test_messages_are_built_as_the_reference_builds_them(processor, make_config):
    """No system turn (the chat template adds none by itself), user text split at <video> and stripped,
    assistant text verbatim; a configured system prompt comes first."""
    record = {"video": "videos/v0.mp4", "conversations": [
        {"from": "human", "value": "<video>\n  How many chairs?  "}, {"from": "gpt", "value": " two chairs\n"}]}
    encoder = SFTEncoder(processor, make_config())
    assert encoder.messages(record) == [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many chairs?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": " two chairs\n"}]},
    ]
    assert encoder.text(record) == (
        "<|im_start|>user\n<|video_pad|>How many chairs?<|im_end|>\n<|im_start|>assistant\n two chairs\n<|im_end|>\n"
    )
    with_system = SFTEncoder(processor, make_config(system_prompt="You are a helpful assistant."))
    assert with_system.text(record).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|video_pad|>How many chairs?"
    )


def test_length_estimate_is_exact(processor, make_config):
    cfg = make_config(num_frames=None, fps=2.0, min_frames=4)
    encoder = SFTEncoder(processor, cfg)
    records = read_records(cfg.data_path, cfg.data_files)
    assert estimate_lengths(encoder, records) == [encoder.encode(r)["input_ids"].numel() for r in records]


def test_packs_and_sampler():
    lengths = [50, 70, 30, 200, 10, 60]
    packs, dropped = make_packs(lengths, 100, seed=0)
    assert dropped == [3]
    assert sorted(i for p in packs for i in p) == [0, 1, 2, 4, 5]
    assert all(sum(lengths[i] for i in p) <= 100 for p in packs)
    single, _ = make_packs(lengths, 100, seed=0, packing=False)
    assert all(len(p) == 1 for p in single)
    shares = [list(PackSampler(5, seed=1, epoch=2, rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 3 and set(shares[0] + shares[1]) == set(range(5))
    assert list(PackSampler(5, 1, 2, 0, 2, skip=2)) == shares[0][2:]
    assert list(PackSampler(5, 1, 3)) != list(PackSampler(5, 1, 2))  # reshuffled each epoch


def test_dataset_decodes_in_workers(processor, make_config):
    cfg = make_config()
    encoder = SFTEncoder(processor, cfg)
    records = read_records(cfg.data_path, cfg.data_files)
    packs, _ = make_packs(estimate_lengths(encoder, records), cfg.max_length, seed=0)
    dataset = PackDataset(records, packs, encoder)
    loader = DataLoader(dataset, batch_size=1, sampler=PackSampler(len(dataset), 0), collate_fn=collate_pack, num_workers=1)
    seen = [ex for pack in loader for ex in pack]
    assert len(seen) == len(records)
    assert all(ex["input_ids"].numel() <= cfg.max_length for ex in seen)


def test_packed_loss_equals_sequences_one_by_one(processor, make_config):
    cfg = make_config()
    encoder = SFTEncoder(processor, cfg)
    records = read_records(cfg.data_path, cfg.data_files)
    pack = [encoder.encode(r) for r in records[:3]] + [encoder.encode(records[-1])]
    for settings in (TINY_MODEL, {**TINY_MODEL, "use_muon": True}):
        model = tiny_model(seed=1, **settings).train()
        loss, n = pack_loss(model, pack)
        # by hand: each sequence alone, the model's own (mean) loss over all its logits, weighted by its tokens
        total, count = 0.0, 0
        for ex in pack:
            out = model(input_ids=ex["input_ids"][None], mm_token_type_ids=ex["mm_token_type_ids"][None],
                        pixel_values_videos=ex["pixel_values_videos"], video_grid_thw=ex["video_grid_thw"],
                        labels=ex["labels"][None])
            total += float(out.loss.detach()) * answer_tokens(ex)
            count += answer_tokens(ex)
        assert n == count
        torch.testing.assert_close(float(loss), total / count, rtol=1e-6, atol=1e-6)


def test_per_sequence_backward_gives_the_packed_gradient(processor, make_config):
    cfg = make_config()
    encoder = SFTEncoder(processor, cfg)
    records = read_records(cfg.data_path, cfg.data_files)
    pack = [encoder.encode(r) for r in records[:3]]
    model = tiny_model(seed=2, **TINY_MODEL).train()
    loss, _ = pack_loss(model, pack)
    loss.backward()
    whole = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    loss2, _ = pack_loss(model, pack, backward=lambda part: part.backward())
    torch.testing.assert_close(loss2, loss.detach())
    for name, grad in whole.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-5, atol=1e-7)
    ttt = [n for n in whole if ".self_attn.w0" in n or ".lr_proj." in n]
    assert ttt and all(whole[n].abs().sum() > 0 for n in ttt)  # gradients reach the TTT parameters


def test_padded_rows_give_the_packed_loss_and_gradient(processor, make_config):
    """pack_rows: the pack as right-padded rows of one forward gives the loss and gradient of the sequences one by
    one (padding after a row's end reaches no real token: causal attention, a TTT chunk updates later chunks only)."""
    cfg = make_config()
    encoder = SFTEncoder(processor, cfg)
    records = read_records(cfg.data_path, cfg.data_files)
    pack = [encoder.encode(r) for r in (records[0], records[-1], records[1])]
    lengths = [ex["input_ids"].numel() for ex in pack]
    assert len(set(lengths)) > 1 and max(lengths) - min(lengths) > TINY_MODEL["lact_chunk_size"]  # real padding
    model = tiny_model(seed=3, **TINY_MODEL).train()
    grads = []
    for rows, multiple in ((False, 1), (True, 1), (True, 4)):  # 4: one blank row joins the three
        model.zero_grad(set_to_none=True)
        loss, n = pack_loss(model, pack, backward=lambda part: part.backward(), rows=rows, row_multiple=multiple)
        grads.append((float(loss), n, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (one_by_one, n1, g1), *padded_runs = grads
    for padded, n2, g2 in padded_runs:
        assert n1 == n2 == sum(answer_tokens(ex) for ex in pack)
        torch.testing.assert_close(padded, one_by_one, rtol=1e-6, atol=1e-6)
        assert g1.keys() == g2.keys()
        for name in g1:
            assert float((g2[name] - g1[name]).norm()) <= 1e-5 * float(g1[name].norm()) + 1e-9, name  # summation order
    inputs, labels = pad_rows(pack, row_multiple=4)
    assert inputs["input_ids"].shape == (4, max(lengths)) and (labels[3] == IGNORE_INDEX).all()
    # the padding really is ignored: a different pad token changes nothing
    inputs, labels = pad_rows(pack, pad_id=7)
    assert (labels[0, lengths[0]:] == IGNORE_INDEX).all() and (inputs["input_ids"][0, lengths[0]:] == 7).all()
