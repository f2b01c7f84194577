"""Everything `heron.__all__` promises can be imported and is the real object."""

import heron


def test_every_export_resolves_to_its_module_object():
    from heron.models import build
    from heron.tasks.classify import load_run

    for name in heron.__all__:
        assert getattr(heron, name) is not None, name
    assert heron.build is build and heron.load_run is load_run


def test_unknown_attribute_raises():
    try:
        heron.not_a_thing
    except AttributeError as err:
        assert "not_a_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
