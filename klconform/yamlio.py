"""Safe, strict YAML reading with line numbers for error messages.

Case files are data written by many hands and sometimes by strangers, so loading refuses
anything beyond plain data: Python tags (SafeLoader already refuses them), aliases (which
let a small file expand into a huge document), duplicate keys (which YAML would silently
resolve to the last one), and files too large or too deeply nested to be real case files.
"""

from pathlib import Path

import yaml

from klconform.errors import SpecError

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed in klconform files",
                problem_mark=event.start_mark,
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(
                    problem=f"nesting deeper than {MAX_DEPTH} levels",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class Document:
    """Parsed YAML data plus the node tree, to map a data path back to a line."""

    def __init__(self, path, data, root):
        self.path = Path(path)
        self.data = data
        self._root = root

    def line_of(self, data_path):
        node = self._root
        line = node.start_mark.line + 1 if node is not None else None
        for key in data_path:
            if isinstance(node, yaml.MappingNode):
                match = [value for key_node, value in node.value if key_node.value == str(key)]
                if not match:
                    break
                node = match[0]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if key >= len(node.value):
                    break
                node = node.value[key]
            else:
                break
            line = node.start_mark.line + 1
        return line


def read_yaml(path) -> Document:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise SpecError(path, f"cannot read: {error.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise SpecError(path, f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(filter(None, [error.context, error.problem])).replace("\n", " ")
        raise SpecError(path, f"YAML error: {problem}", line=line) from None
    except yaml.YAMLError as error:
        raise SpecError(path, f"YAML error: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise SpecError(path, "YAML nesting too deep to load") from None
    finally:
        loader.dispose()
    return Document(path, data, root)
