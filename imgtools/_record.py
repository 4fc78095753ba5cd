"""``@dataclass`` for the model's plain data classes, without importing dataclasses.

The image model is a dozen classes of annotated fields (defaults, ``field(default_factory=
...)``). The stdlib's dataclasses module imports inspect (ast, dis, tokenize, ...) and
makes each class with three compiled methods: together a third of the start-up of
``imgtools info`` (issue 11). Here a class gets the same ``__init__``, ``__repr__``,
``__eq__``, ``__hash__ = None`` and ``__match_args__`` as ``@dataclasses.dataclass``
gives it, made in one compile; anything else (decorator options, ``field()`` options
other than default_factory, ClassVar, InitVar, inheritance) is handed to dataclasses
itself, so a class means what the stdlib says it means (tests/test_record.py compares).
"""
from __future__ import annotations

import reprlib


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


class _Field:
    """A field() this module does not make: dataclasses.field(**options)."""
    __slots__ = ("options",)

    def __init__(self, options: dict):
        self.options = options


def field(**options):
    if set(options) == {"default_factory"}:
        return _Factory(options["default_factory"])
    return _Field(options)


def dataclass(cls=None, /, **options):
    if cls is None:
        return lambda c: dataclass(c, **options)
    names = list(cls.__dict__.get("__annotations__", {}))
    made = None if set(options) - {"slots"} or _unusual(cls, names) else \
        _make(cls, names, bool(options.get("slots")))
    return made if made is not None else _stdlib(cls, names, options)


def _unusual(cls, names: list[str]) -> bool:
    annotations = cls.__dict__.get("__annotations__", {})
    return any(base is not object for base in cls.__mro__[1:]) or any(
        not isinstance(a, str) or a.split("[")[0].split(".")[-1] in
        ("ClassVar", "InitVar", "KW_ONLY") for a in annotations.values()) or any(
        isinstance(v, _Field) for v in cls.__dict__.values()) or any(
        n in cls.__dict__ for n in ("__init__", "__repr__", "__eq__", "__hash__",
                                    "__match_args__"))


def _stdlib(cls, names: list[str], options: dict):
    import dataclasses
    for name, value in list(cls.__dict__.items()):
        if isinstance(value, _Factory):
            setattr(cls, name, dataclasses.field(default_factory=value.make))
        elif isinstance(value, _Field):
            setattr(cls, name, dataclasses.field(**value.options))
    return dataclasses.dataclass(cls, **options)


_NO_DEFAULT = object()
_FROM_FACTORY = object()        # the parameter's default when a factory makes the value


def _make(cls, names: list[str], slots: bool):
    """cls with its methods (with ``slots``, a class made anew with the fields as its
    __slots__, as dataclasses makes it: a slot and a class attribute of one name cannot
    both be, so defaults live in __init__ alone), or None if the fields are out of order
    (dataclasses says why)."""
    scope = {"_FROM_FACTORY": _FROM_FACTORY}
    params, body = [], []
    seen_default = False
    for name in names:
        value = cls.__dict__.get(name, _NO_DEFAULT)
        if value is _NO_DEFAULT:
            if seen_default:
                return None
            params.append(name)
            body.append(f"    self.{name} = {name}")
        elif isinstance(value, _Factory):
            seen_default = True
            scope[f"_make_{name}"] = value.make
            params.append(f"{name}=_FROM_FACTORY")
            body.append(f"    self.{name} = _make_{name}() if {name} is _FROM_FACTORY "
                        f"else {name}")
        elif type(value).__hash__ is None:
            return None             # a mutable default: dataclasses refuses it
        else:
            seen_default = True
            scope[f"_default_{name}"] = value
            params.append(f"{name}=_default_{name}")
            body.append(f"    self.{name} = {name}")
    fields = "".join(f"self.{n}," for n in names)
    others = "".join(f"other.{n}," for n in names)
    shown = ", ".join(f"{n}={{self.{n}!r}}" for n in names)
    source = (f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"]) +
              "\n"
              "def __repr__(self):\n"
              f"    return self.__class__.__qualname__ + f\"({shown})\"\n"
              "def __eq__(self, other):\n"
              "    if other.__class__ is self.__class__:\n"
              f"        return ({fields}) == ({others})\n"
              "    return NotImplemented\n")
    exec(source, scope)     # noqa: S102 - our own source text, made from field names
    if slots:
        body = {k: v for k, v in cls.__dict__.items()
                if k not in names and k not in ("__dict__", "__weakref__")}
        body["__slots__"] = tuple(names)
        body["__qualname__"] = cls.__qualname__
        cls = type(cls)(cls.__name__, cls.__bases__, body)
    for name in ("__init__", "__repr__", "__eq__"):
        method = scope[name]
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, reprlib.recursive_repr()(method) if name == "__repr__" else method)
    for name in names:
        if not slots and isinstance(cls.__dict__.get(name), _Factory):
            delattr(cls, name)
    cls.__hash__ = None
    cls.__match_args__ = tuple(names)
    return cls
