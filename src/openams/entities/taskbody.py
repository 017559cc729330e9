"""TaskBody XML: which job inputs and outputs a task reads and writes.

    <taskBody>
      <inputAsset>JobInputAsset(0)</inputAsset>              (or JobOutputAsset(k): chaining)
      <outputAsset assetName="…" assetCreationOptions="0" storageAccountName="…">JobOutputAsset(0)</outputAsset>
    </taskBody>

Clients serialise it with indentation and often a `utf-16` declaration inside a UTF-8 string;
attribute names come in camel and Pascal case. Parsed with a DTD-free, entity-free parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import BadRequest

_REF = re.compile(r"^\s*Job(Input|Output)Asset\((\d{1,4})\)\s*$", re.IGNORECASE)
MAX_TASKBODY = 100_000


@dataclass(frozen=True)
class AssetRef:
    kind: str
    """`input` (JobInputAsset) or `output` (JobOutputAsset)."""
    index: int

    def __str__(self) -> str:
        return f"Job{self.kind.capitalize()}Asset({self.index})"


@dataclass(frozen=True)
class OutputSpec:
    ref: AssetRef
    name: str | None = None
    options: int = 0
    format_option: int = 0
    storage_account: str | None = None


@dataclass
class TaskBodySpec:
    inputs: list[AssetRef] = field(default_factory=list)
    outputs: list[OutputSpec] = field(default_factory=list)


def _attr(el: object, *names: str) -> str | None:
    attrib = getattr(el, "attrib", {})
    lowered = {k.lower(): v for k, v in attrib.items()}
    for n in names:
        if n.lower() in lowered:
            return lowered[n.lower()]
    return None


def _ref(text: str | None, where: str) -> AssetRef:
    m = _REF.match(text or "")
    if not m:
        shown = (text or "").strip()
        raise BadRequest(f"TaskBody: {where} must be JobInputAsset(n) or JobOutputAsset(n), not '{shown}'.")
    return AssetRef(m.group(1).lower(), int(m.group(2)))


def _int_attr(el: object, names: tuple[str, ...], allowed: tuple[int, ...], what: str) -> int:
    raw = _attr(el, *names)
    if raw is None or raw.strip() == "":
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest(f"TaskBody: {what} must be a number, not '{raw}'.") from None
    if value not in allowed:
        raise BadRequest(f"TaskBody: {what} must be one of {', '.join(map(str, allowed))}, not {value}.")
    return value


def parse_task_body(text: str) -> TaskBodySpec:
    from ..odata.atom import parse_xml

    if not text or not text.strip():
        raise BadRequest("Task.TaskBody is required.")
    if len(text) > MAX_TASKBODY:
        raise BadRequest("Task.TaskBody is too long.")
    try:
        root = parse_xml(text.strip().encode("utf-8"), what="TaskBody")
    except Exception as exc:  # InvalidPayload from the safe parser, with its message
        raise BadRequest(f"TaskBody is not valid XML: {getattr(exc, 'message', exc)}") from None
    tag = root.tag.rsplit("}", 1)[-1]
    if tag.lower() != "taskbody":
        raise BadRequest(f"TaskBody: the root element must be <taskBody>, not <{tag}>.")
    spec = TaskBodySpec()
    for el in root:
        name = el.tag.rsplit("}", 1)[-1].lower()
        if name == "inputasset":
            spec.inputs.append(_ref(el.text, "<inputAsset>"))
        elif name == "outputasset":
            ref = _ref(el.text, "<outputAsset>")
            if ref.kind != "output":
                raise BadRequest("TaskBody: <outputAsset> must name JobOutputAsset(n).")
            spec.outputs.append(OutputSpec(
                ref,
                name=_attr(el, "assetName"),
                options=_int_attr(el, ("assetCreationOptions",), (0, 1, 2, 4), "assetCreationOptions"),
                format_option=_int_attr(el, ("assetFormatOption",), (0, 1), "assetFormatOption"),
                storage_account=_attr(el, "storageAccountName"),
            ))
        else:
            raise BadRequest(f"TaskBody: unexpected element <{el.tag.rsplit('}', 1)[-1]}>.")
    if not spec.inputs:
        raise BadRequest("TaskBody: a task needs at least one <inputAsset>.")
    if not spec.outputs:
        raise BadRequest("TaskBody: a task needs at least one <outputAsset>.")
    return spec
