"""YAML as tpp reads it: safe (no Python objects) and strict about duplicate keys.

PyYAML keeps the last of two equal keys silently, so ``lr: 0.1`` followed later by ``lr: 0.01``
in a config or recipe would run with one of them unannounced; here it is a
``yaml.constructor.ConstructorError`` whose ``problem`` and ``problem_mark`` name the key and line.
"""

from __future__ import annotations

from typing import Any


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing a mapping that repeats a key.

    PyYAML builds nested collections recursively, so thousands of nested brackets would end in a
    ``RecursionError``; that becomes a ``yaml.YAMLError`` whose ``problem`` says so, which every
    caller already reports as malformed YAML.
    """
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        error = yaml.YAMLError()
        error.problem = "collections nested too deeply to read"  # type: ignore[attr-defined]
        raise error from None


_LOADER: Any = None


def _unique_key_loader() -> Any:
    global _LOADER
    if _LOADER is None:
        import yaml
        from yaml.constructor import ConstructorError

        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                if isinstance(node, yaml.MappingNode):
                    seen: set[Any] = set()
                    for key_node, _ in node.value:
                        key = self.construct_object(key_node, deep=deep)
                        try:
                            duplicate = key in seen
                            seen.add(key)
                        except TypeError:  # an unhashable key: SafeLoader reports it itself
                            continue
                        if duplicate:
                            raise ConstructorError(
                                "while constructing a mapping",
                                node.start_mark,
                                f"found duplicate key {key!r}",
                                key_node.start_mark,
                            )
                return super().construct_mapping(node, deep=deep)

        _LOADER = UniqueKeyLoader
    return _LOADER
