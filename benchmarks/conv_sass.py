"""The conv stencil's machine code without a GPU: the Triton kernel compiled for sm_90 (an H100/H200) and
disassembled by the nvdisasm that ships with Triton, its instructions counted by opcode, per tile and weight dtype.
The kernel does 27 fused multiply-adds per output element; what else it issues (bf16 unpacking, address
arithmetic, register spills: STL/LDL) is what a faster stencil must cut.

    PYTHONPATH=src:benchmarks python benchmarks/conv_sass.py --out conv_sass.json   # CPU, seconds
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from common import write_json
from spatial_ttt.ops.conv_triton import TILE, _conv3_kernel

NVDISASM = Path(triton.__file__).parent / "backends/nvidia/bin/nvdisasm"
CASES = [dict(tile=dict(TILE, block_hw=16), weight="bf16"), dict(tile=TILE, weight="bf16"),
         dict(tile=TILE, weight="fp32"), dict(tile=dict(TILE, block_channels=32), weight="bf16")]


def compile_for_h100(kernel, pointers: dict[str, str], aligned_pointers: set[str], constants: dict, num_warps: int):
    """``kernel`` compiled down to sm_90 machine code with the arguments as a launch on the 2B shape's tensors
    specialises them: ``constants`` as constexprs, 16-byte aligned ``aligned_pointers``, channels ``C`` and strides,
    every other integer plain. No GPU needed (the compile tests of tests/core/test_conv_triton.py use it too)."""
    names = kernel.arg_names
    signature = {name: "constexpr" if name in constants else pointers.get(name, "i32") for name in names}
    aligned = [name for name in names if name not in constants and (
        name in aligned_pointers or name == "C" or name.startswith("stride_"))]
    attrs = {(names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


def sass_counts(tile: dict[str, int], weight: str) -> collections.Counter:
    """Opcode counts of the stencil compiled as a launch on the 2B shape's bf16 tensors specialises it (16-byte
    aligned pointers, channels and strides; channels contiguous)."""
    tensors = {name: "*bf16" for name in ("x", "first", "last", "out")} | {"weight": f"*{weight}"}
    pointers = tensors | {"frames": "*i64", "out_frames": "*i64"}
    constants = dict(stride_c=1, BLOCK_HW=tile["block_hw"], BLOCK_C=tile["block_channels"], BLOCK_T=tile["block_t"])
    cubin = compile_for_h100(_conv3_kernel, pointers, set(tensors), constants, tile["num_warps"]).asm["cubin"]
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        listing = subprocess.run([str(NVDISASM), "-c", f.name], capture_output=True, text=True, check=True).stdout
    # an instruction line: /*0a30*/  [@P0] OPCODE.MODIFIERS operands ;
    opcodes = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9]+)", listing)
    return collections.Counter(opcodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args()
    runs = []
    for case in CASES:
        counts = sass_counts(case["tile"], case["weight"])
        runs.append(dict(case, instructions=sum(counts.values()), ffma=counts["FFMA"],
                         spills=counts["STL"] + counts["LDL"], opcodes=dict(counts.most_common(12))))
        print(json.dumps(runs[-1]), flush=True)
    write_json(args.out, dict(target="sm_90", triton=triton.__version__, runs=runs))


if __name__ == "__main__":
    main()
