"""Safe, strict YAML reading with line numbers for error messages.

Case files are data written by many hands and sometimes by strangers, so loading refuses
anything beyond plain data: Python tags (SafeLoader already refuses them), aliases (which
let a small file expand into a huge document), duplicate keys (which YAML would silently
resolve to the last one), mapping keys that are not plain scalars, and files too large, too
deeply nested or holding too many values to be real case files. Every refusal is a one-line
SpecError with the line where it was found.
"""

from pathlib import Path

import yaml

from klconform.errors import SpecError

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
# The pure-Python loader and the schema check cost about 0.1 ms per value, so a file near
# MAX_FILE_BYTES of plain numbers would take minutes; the largest real file holds about 2,000
# values, and large data is what the seeded_normal and full constructors are for.
MAX_NODES = 100_000


class _StrictChecks:
    """The refusals, on top of either PyYAML loader (they live in the Python composer)."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed in klconform files",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        self._nodes += 1
        try:
            if self._nodes > MAX_NODES:
                raise yaml.MarkedYAMLError(
                    problem=f"more than {MAX_NODES} values; use a constructor "
                            "(seeded_normal, full) for large data",
                    problem_mark=self.peek_event().start_mark,
                )
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
            # A list or mapping as a key is legal YAML but never a case field, and it is
            # unhashable: refuse it here rather than let the constructor raise TypeError.
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.MarkedYAMLError(
                    problem="mapping keys must be plain names, not lists or mappings",
                    problem_mark=key_node.start_mark,
                )
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        # Python refuses int() of more than 4300 digits with a ValueError, which PyYAML
        # passes through unmarked; turn it into a YAML error that names the line.
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.MarkedYAMLError(
                problem=f"an integer of {len(node.value)} characters is too long to read",
                problem_mark=node.start_mark,
            ) from None


class _PureStrictLoader(_StrictChecks, yaml.SafeLoader):
    pass


_PureStrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictChecks.construct_yaml_int)

def _libyaml_usable():
    """libyaml is there, and its events are the classes the Python composer checks for.

    An extension module is initialised once per process: after a re-import of yaml (pytest's
    in-process runs restore sys.modules) libyaml still makes the first import's events.
    """
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    return getattr(yaml._yaml, "ScalarEvent", None) is yaml.events.ScalarEvent


if _libyaml_usable():

    class _CStrictLoader(_StrictChecks, yaml.composer.Composer, yaml._yaml.CParser,
                         yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """libyaml scans and parses (most of the time); the Python composer keeps the checks.

        Composer comes before CParser so that its get_single_node, and through it the
        compose_node above, build the tree from CParser's events.
        """

        def __init__(self, stream):
            yaml._yaml.CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _CStrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictChecks.construct_yaml_int)
    _StrictLoader = _CStrictLoader
else:  # PyYAML built without libyaml: the same checks, slower
    _StrictLoader = _PureStrictLoader


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
                match = [(key_node, value) for key_node, value in node.value
                         if key_node.value == str(key)]
                if not match:
                    break
                # The key's line: a block mapping or list value starts on the line below
                # "key:", and a person looks for the name of the field.
                key_node, node = match[0]
                line = key_node.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if key >= len(node.value):
                    break
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                break
        return line


def read_yaml(path) -> Document:
    path = Path(path)
    text = _read_text(path)
    try:
        return _load(path, text, _StrictLoader)
    except SpecError:
        if _StrictLoader is _PureStrictLoader:
            raise
    # libyaml's messages are terse ("found character that cannot start any token"); the
    # pure-Python loader finds the same error and says what the character was.
    return _load(path, text, _PureStrictLoader)


def _load(path, text, loader_class):
    try:
        # The loader checks the characters of the whole text on construction (NUL and other
        # control characters raise ReaderError there), so it is built inside the try.
        loader = loader_class(text)
    except yaml.YAMLError as error:
        raise _yaml_error(path, text, error) from None
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        raise _yaml_error(path, text, error) from None
    except RecursionError:
        raise SpecError(path, "YAML nesting too deep to load") from None
    finally:
        loader.dispose()
    return Document(path, data, root)


def _read_text(path):
    try:
        # Read at most one byte past the limit: the size from stat() is 0 for a device or a
        # pipe, so the limit is enforced on what is actually read.
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise SpecError(path, f"cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(path, f"file is over the limit of {MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(path, f"not UTF-8 text ({error.reason} at byte {error.start})",
                        line=raw.count(b"\n", 0, error.start) + 1) from None


def _yaml_error(path, text, error):
    """One SpecError line from any PyYAML error; their own str() spans several lines."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        problem = ": ".join(filter(None, [error.context, error.problem]))
    elif isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        # For text input PyYAML reports the character as its code point (an int).
        code = error.character if isinstance(error.character, int) else ord(error.character[0])
        problem = f"character U+{code:04X} is not allowed ({error.reason})"
    else:
        line, problem = None, str(error)
    return SpecError(path, "YAML error: " + " ".join(problem.split()), line=line)
