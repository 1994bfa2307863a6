"""All-reduces of a compiled XLA program, read from its HLO text.

``compiled.as_text()`` (``jax.jit(f).lower(...).compile()``) lists every instruction of the
optimised per-device program. This module finds the all-reduces in it — synchronous
``all-reduce`` (CPU) and asynchronous ``all-reduce-start`` (GPU; its ``-done`` is not
counted again) — with the shapes they reduce, so a test or a benchmark can say how many
collectives a train step issues and which one carries the gradients.

XLA's all-reduce combiner may merge independent all-reduces into one instruction with a
tuple of operands (e.g. the gradient vector together with the scalar metrics); such an
instruction is one all-reduce here, holding several arrays.
"""

from __future__ import annotations

import dataclasses
import math
import re

# "%name = <type> all-reduce(" or "all-reduce-start(" at the start of an instruction line.
_INSTR = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<type>.*?)\s*"
    r"(?P<op>all-reduce(?:-start)?)\((?P<rest>.*)$"
)
_ARRAY = re.compile(r"\b(?P<dtype>pred|[suf]\d+|bf16|c64|c128|f8\w*)\[(?P<dims>[\d,]*)\]")
_OP_NAME = re.compile(r'op_name="(?P<op_name>[^"]*)"')


@dataclasses.dataclass(frozen=True)
class AllReduce:
    """One all-reduce instruction.

    Attributes:
      name: the HLO instruction name.
      arrays: ``(dtype, shape)`` of every array it reduces (its result type; a tuple when
        XLA combined several all-reduces).
      op_name: the JAX op path from the instruction's metadata (``""`` if none).
    """

    name: str
    arrays: tuple[tuple[str, tuple[int, ...]], ...]
    op_name: str

    @property
    def elements(self) -> int:
        """Total number of array elements reduced."""
        return sum(math.prod(shape) for _, shape in self.arrays)

    def holds(self, shape: tuple[int, ...], dtype: str = "f32") -> bool:
        """Whether one of the reduced arrays has exactly this shape and dtype."""
        return any(d == dtype and s == tuple(shape) for d, s in self.arrays)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "arrays": [f"{d}[{','.join(map(str, s))}]" for d, s in self.arrays],
            "elements": self.elements,
            "op_name": self.op_name,
        }


def all_reduces(hlo_text: str) -> list[AllReduce]:
    """Every all-reduce instruction of an HLO module's text, in order of appearance."""
    out = []
    for line in hlo_text.splitlines():
        m = _INSTR.match(line)
        if not m:
            continue
        arrays = tuple(
            (a["dtype"], tuple(int(d) for d in a["dims"].split(",") if d))
            for a in _ARRAY.finditer(m["type"])
        )
        op = _OP_NAME.search(m["rest"])
        out.append(AllReduce(m["name"], arrays, op["op_name"] if op else ""))
    return out


def gradient_all_reduce_summary(hlo_text: str, num_gradients: int) -> dict:
    """How the gradients of a train step cross devices.

    ``num_gradients`` is the number of trainable parameters: the step flattens all of
    their gradients into one ``f32[num_gradients]`` vector before its all-reduce (see
    ``facedeblur_jax/training/step.py``), so the all-reduces holding such a vector are the
    gradient all-reduces. The others (BatchNorm statistics, metrics) are listed with their
    sizes.
    """
    ars = all_reduces(hlo_text)
    grad = [a for a in ars if a.holds((num_gradients,))]
    others = [a for a in ars if a not in grad]
    return {
        "all_reduces": len(ars),
        "gradient_all_reduces": len(grad),
        "gradient_elements": num_gradients,
        "gradient": [a.to_dict() for a in grad],
        "other_all_reduces": len(others),
        "other_elements": sum(a.elements for a in others),
        "other": [a.to_dict() for a in others],
    }
