"""imgtools._record.dataclass gives the classes of the model, the core planner and the
converters what @dataclasses.dataclass gives them: each module is loaded a second time with
the stdlib's decorator and every class of both is compared (init, defaults, factories, repr, ==, hash, match args); what it does
not make itself is the stdlib's."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

import converters._base
import converters.chain
import imgtools.core.elf
import imgtools.core.notes
from imgtools import _record, model

# the modules whose classes _record makes, and the line that imports it in each
MODULES = {model: "from ._record import dataclass, field",
           imgtools.core.elf: "from .._record import dataclass, field",
           imgtools.core.notes: "from .._record import dataclass",
           converters._base: "from imgtools._record import dataclass",
           converters.chain: "from imgtools._record import dataclass, field"}


def _stdlib_twin(module, line):
    """The module loaded again, its @dataclass the stdlib's."""
    source = Path(module.__file__).read_text()
    assert line in source
    spec = importlib.util.spec_from_loader(f"{module.__name__}_stdlib", loader=None)
    twin = importlib.util.module_from_spec(spec)
    twin.__package__ = module.__package__
    sys.modules[spec.name] = twin           # (dataclasses looks the module up)
    try:
        stdlib = "from dataclasses import " + line.split(" import ", 1)[1]
        exec(compile(source.replace(line, stdlib), module.__file__, "exec"), twin.__dict__)
    finally:
        del sys.modules[spec.name]
    return twin


TWINS = {module: _stdlib_twin(module, line) for module, line in MODULES.items()}
TWIN = TWINS[model]
# the classes these modules make with @dataclass (others are written out by hand)
CLASSES = [(module, name) for module in MODULES for name, v in vars(module).items()
           if isinstance(v, type) and v.__module__ == module.__name__
           and dataclasses.is_dataclass(getattr(TWINS[module], name))]


def _required(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


@pytest.mark.parametrize("module,name", CLASSES, ids=[f"{m.__name__}.{n}" for m, n in CLASSES])
def test_the_classes_are_the_stdlibs(module, name):
    ours, theirs = getattr(module, name), getattr(TWINS[module], name)
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
