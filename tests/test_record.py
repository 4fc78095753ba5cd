"""imgtools._record.dataclass gives the model's classes what @dataclasses.dataclass gives
them: the model module is loaded a second time with the stdlib's decorator and every class
of both is compared (init, defaults, factories, repr, ==, hash, match args); what it does
not make itself is the stdlib's."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from imgtools import _record, model

SOURCE = Path(model.__file__).read_text()
LINE = "from ._record import dataclass, field"


def _stdlib_twin():
    assert LINE in SOURCE
    spec = importlib.util.spec_from_loader("imgtools._model_stdlib", loader=None)
    twin = importlib.util.module_from_spec(spec)
    twin.__package__ = "imgtools"
    sys.modules[spec.name] = twin           # (dataclasses looks the module up)
    try:
        exec(compile(SOURCE.replace(LINE, "from dataclasses import dataclass, field"),
                     model.__file__, "exec"), twin.__dict__)
    finally:
        del sys.modules[spec.name]
    return twin


TWIN = _stdlib_twin()
# the classes the model makes with @dataclass (others are written out by hand)
CLASSES = [name for name, v in vars(model).items()
           if isinstance(v, type) and v.__module__ == model.__name__
           and dataclasses.is_dataclass(getattr(TWIN, name))]


def _required(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


@pytest.mark.parametrize("name", CLASSES)
def test_the_model_classes_are_the_stdlibs(name):
    ours, theirs = getattr(model, name), getattr(TWIN, name)
    assert dataclasses.is_dataclass(theirs) and not dataclasses.is_dataclass(ours)
    required = _required(theirs)
    args = list(range(1, len(required) + 1))
    a, b = ours(*args), theirs(*args)
    assert repr(a) == repr(b)
    fields = [f.name for f in dataclasses.fields(theirs)]
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    slotted = "__slots__" in theirs.__dict__
    assert ("__slots__" in ours.__dict__) == slotted
    if slotted:                                 # no __dict__, the fields as the slots
        assert ours.__slots__ == theirs.__slots__ == tuple(fields)
        assert not hasattr(a, "__dict__") and not hasattr(b, "__dict__")
    else:
        assert vars(a) == vars(b)
    assert a == ours(*args) and a != b and (a == b) is False     # another class: unequal
    assert ours.__hash__ is None and theirs.__hash__ is None
    assert ours.__match_args__ == theirs.__match_args__
    for f in dataclasses.fields(theirs):        # defaults, factories made anew each time
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(a, f.name) is not getattr(ours(*args), f.name)
            if not slotted:
                assert not hasattr(ours, f.name) and not hasattr(theirs, f.name)
        elif f.default is not dataclasses.MISSING:
            assert getattr(ours(*args), f.name) == getattr(theirs(*args), f.name) == f.default
            if not slotted:
                assert getattr(ours, f.name) == getattr(theirs, f.name) == f.default
    kw = {n: -i for i, n in enumerate(ours.__match_args__)}
    assert repr(ours(**kw)) == repr(theirs(**kw))
    if required:
        with pytest.raises(TypeError):
            ours(*args[:-1])
        with pytest.raises(TypeError):
            ours(*args, **{required[0]: 1})


def test_a_recursive_repr_stops_as_the_stdlibs_does():
    a, b = model.Obj(1, "file", None, 0), TWIN.Obj(1, "file", None, 0)
    a.value, b.value = a, b
    assert repr(a) == repr(b) == "Obj(ref=1, kind='file', value=..., offset=0, task=None)"


def test_what_it_does_not_make_is_the_stdlibs():
    @_record.dataclass(frozen=True)
    class Frozen:
        x: int = 0

    @_record.dataclass
    class Options:
        x: list = _record.field(default_factory=list, repr=False)

    for cls in (Frozen, Options):
        assert dataclasses.is_dataclass(cls)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Frozen().x = 1
    assert repr(Options()) == "test_what_it_does_not_make_is_the_stdlibs.<locals>.Options()"
    with pytest.raises(ValueError):             # a mutable default: refused as ever
        @_record.dataclass
        class Mutable:
            x: list = []
    with pytest.raises(TypeError):              # a required field after a default one
        @_record.dataclass
        class Order:
            x: int = 0
            y: int
