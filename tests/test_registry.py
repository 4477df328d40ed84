"""Plugins found one way: seqlab's own models, tasks and callbacks are entry points, as a plugin's are."""

import logging
import pkgutil
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint, distribution
from pathlib import Path

import pytest

import seqlab.callbacks
import seqlab.models
import seqlab.tasks
from seqlab import Callback, Model, Task
from seqlab import registry as registry_module
from seqlab.errors import SeqlabError
from seqlab.registry import CALLBACKS, MODELS, TASKS, Registry, missing_requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
KINDS = [(MODELS, seqlab.models, Model), (TASKS, seqlab.tasks, Task), (CALLBACKS, seqlab.callbacks, Callback)]


def declared() -> dict[str, dict[str, str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]


def test_the_installed_metadata_declares_what_pyproject_declares():
    installed = {}
    for point in distribution("seqlab").entry_points:
        if point.group.startswith("seqlab."):
            installed.setdefault(point.group, {})[point.name] = point.value
    expected = {group: points for group, points in declared().items() if group.startswith("seqlab.")}
    assert installed == expected, "the editable install is stale: run `pip install --no-deps -e .` again"


@pytest.mark.parametrize("registry, package, base", KINDS, ids=lambda k: getattr(k, "kind", None))
def test_every_module_of_a_plugin_package_is_declared(registry, package, base):
    # A new file in models/, tasks/ or callbacks/ that no entry point names would never be found.
    modules = {
        f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    }
    declared_modules = {target.split(":")[0] for target in registry.targets().values()}
    assert modules - declared_modules == set()


@pytest.mark.parametrize("registry, package, base", KINDS, ids=lambda k: getattr(k, "kind", None))
def test_every_entry_point_loads_a_class_of_its_kind_under_its_name(registry, package, base):
    own = [name for name, target in registry.targets().items() if target.startswith("seqlab.")]
    assert own
    for name in own:
        cls = registry.get(name)
        assert issubclass(cls, base), name
        assert registry.name_of(cls) == name
        assert cls.registry_name == name


def test_importing_seqlab_and_the_trainer_imports_no_plugin():
    code = textwrap.dedent(
        """
        import sys
        import seqlab, seqlab.trainer
        from seqlab.registry import CALLBACKS, MODELS, TASKS
        names = MODELS.names() + TASKS.names() + CALLBACKS.names()
        # name_of compares module:qualname with the entry points: it imports nothing either.
        Fake = type("MLP", (), {"__module__": "seqlab.models.mlp"})
        assert MODELS.name_of(Fake) == "mlp"
        loaded = [m for m in sys.modules if m.startswith(("seqlab.models.", "seqlab.tasks.", "seqlab.callbacks."))]
        print(len(names), loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.split(" ", 1)
    assert int(count) >= 15 and loaded.strip() == "[]"


def fake_registry(monkeypatch, *points: tuple[str, str]) -> Registry:
    """A model registry whose entry points are ``points`` ((name, "module:attr")) and seqlab's own."""
    real = registry_module.entry_points

    def entry_points(group):
        return [*real(group=group), *(EntryPoint(name, value, group) for name, value in points)]

    monkeypatch.setattr(registry_module, "entry_points", entry_points)
    return Registry("model", "seqlab.models")


def test_a_built_in_that_fails_to_import_is_an_error_not_a_missing_name(monkeypatch):
    # It stays listed, so its contract tests (parametrized by names()) run and fail loudly.
    models = fake_registry(monkeypatch, ("ghost", "seqlab.models.ghost:Ghost"))
    assert "ghost" in models.names()
    with pytest.raises(ModuleNotFoundError, match="seqlab.models.ghost"):
        models.get("ghost")
    with pytest.raises(ModuleNotFoundError):
        dict(models.items())


def test_a_broken_plugin_of_another_package_is_named_and_the_others_still_work(monkeypatch, caplog):
    models = fake_registry(monkeypatch, ("gone", "seqlab_gone_plugin:Gone"))
    with pytest.raises(SeqlabError, match="plugin 'gone' is installed but unusable: seqlab_gone_plugin:Gone failed"):
        models.get("gone")
    with caplog.at_level(logging.WARNING, logger="seqlab.registry"):
        listed = dict(models.items())
    assert "gone" not in listed and "mlp" in listed
    assert "could not load model plugin 'gone'" in caplog.text


def test_a_plugin_that_is_not_a_model_is_refused(monkeypatch):
    models = fake_registry(monkeypatch, ("path", "pathlib:Path"))
    with pytest.raises(SeqlabError, match="not a subclass of seqlab.Model"):
        models.get("path")


def test_a_plugin_whose_optional_package_is_missing_is_still_listed():
    cls = MODELS.get("pnlp_llama")  # its module imports paddlenlp only when a model is built
    assert "pnlp_llama" in MODELS.names()
    assert missing_requirement(cls) in (None, "pip install 'seqlab[paddlenlp]'")


def test_classes_defined_at_run_time_register_with_the_decorator(monkeypatch):
    models = fake_registry(monkeypatch)

    @models.register("tiny_run_time")
    class Tiny(Model):
        """A model defined at run time."""

    assert models.get("tiny_run_time") is Tiny and models.name_of(Tiny) == "tiny_run_time"
    assert "tiny_run_time" in models.names() and models.register("tiny_run_time")(Tiny) is Tiny

    class Other(Model):
        """Another one."""

    with pytest.raises(SeqlabError, match="registered twice"):
        models.register("tiny_run_time")(Other)
    with pytest.raises(SeqlabError, match=r"'mlp' is registered twice \(seqlab.models.mlp:MLP and"):
        models.register("mlp")(Other)  # a packaged name is taken too


def test_an_unknown_name_lists_the_known_ones_with_the_closest():
    with pytest.raises(SeqlabError, match=r"unknown model 'lstn'. Did you mean 'lstm'\? Known models: .*mlp"):
        MODELS.get("lstn")


def test_the_default_callbacks_are_names_resolved_when_used():
    assert all(name in CALLBACKS for name in seqlab.callbacks.DEFAULTS)
    assert [type(cb) for cb in seqlab.callbacks.default_callbacks()] == [
        CALLBACKS.get(name) for name in seqlab.callbacks.DEFAULTS
    ]
    from seqlab.callbacks import GradientClip  # a class by its name, imported on demand

    assert GradientClip is CALLBACKS.get("gradient_clip") and "GradientClip" in seqlab.callbacks.__all__
    assert set(seqlab.callbacks.import_all()) == {cls for _, cls in CALLBACKS.items()}
    with pytest.raises(AttributeError):
        seqlab.callbacks.NoSuchCallback  # noqa: B018


def test_seqlab_declares_its_own_classes_one_way():
    # The decorator is for classes defined at run time; a file of seqlab's is an entry point.
    users = [
        path.relative_to(ROOT).as_posix()
        for path in sorted((ROOT / "seqlab").rglob("*.py"))
        if path.name not in ("registry.py", "__init__.py")
        and ("@register_model(" in path.read_text() or "@register_task(" in path.read_text())
    ]
    assert users == [], "declare these classes in pyproject.toml's entry points instead"
