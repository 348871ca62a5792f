"""Prompt texts, exactly as the reference evaluation builds them (see /shared/spec/evaluation.md)."""

from __future__ import annotations

from collections.abc import Sequence

PRE_PROMPT = "These are frames of a video."
NUMERICAL_POST_PROMPT = "Please answer the question using a single word or phrase."
MULTIPLE_CHOICE_POST_PROMPT = "Answer with the option's letter from the given choices directly."

# Appended by the reference Spatial-TTT model wrapper to every question (its own comment calls it a
# temporary fix). Needed to reproduce the published numbers, hence on by default. Where exactly the
# wrapper puts it is not documented beyond "appended"; we append it to the end of the full text.
ROOMS_HINT = " There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the final total."

# MindCube "raw_qa" setting of the MindCube release (answer only, no cognitive map / reasoning).
MINDCUBE_RAW_QA_INSTRUCTION = (
    "[Task]\n"
    "Your task is to analyze the spatial arrangement of objects in the scene by examining the provided "
    "images, which show the scene from different viewpoints.\n"
    "[Answer Instruction]\n"
    "You only need to provide *ONE* correct answer selecting from the options listed below. For example, "
    "if you think the correct answer is 'A. Above' from 'A. Above B. Under C. Front D. Behind', your "
    "response should **only** be '<answer>A. Above</answer>'.\n"
)
MINDCUBE_QUESTION_HEADER = "[Question]\n"
IMAGE_PLACEHOLDER = "<image>"


def numerical_prompt(question: str, *, pre_prompt: str = PRE_PROMPT) -> str:
    return f"{pre_prompt}\n{question}\n{NUMERICAL_POST_PROMPT}"


def multiple_choice_prompt(question: str, options: Sequence[str], *, pre_prompt: str | None = PRE_PROMPT) -> str:
    """Options are used as given (the releases already write them as "A. chair")."""
    lines = [question, "Options:", *options, MULTIPLE_CHOICE_POST_PROMPT]
    if pre_prompt is not None:
        lines.insert(0, pre_prompt)
    return "\n".join(lines)


def mindcube_prompt(question: str) -> str:
    """raw_qa prompt; <image> placeholders are dropped because all views go before the text."""
    text = f"{MINDCUBE_RAW_QA_INSTRUCTION}\n{MINDCUBE_QUESTION_HEADER}{question}"
    return strip_image_placeholders(text)


def strip_image_placeholders(text: str) -> str:
    return text.replace(IMAGE_PLACEHOLDER, "").strip()


def with_rooms_hint(prompt: str, enabled: bool) -> str:
    return prompt + ROOMS_HINT if enabled else prompt
