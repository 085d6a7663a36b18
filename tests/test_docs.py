"""The docs stay true: the method example runs and conforms; every hook is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from featurekit import hookspecs
from featurekit.registry import register_plugin, unregister_plugin
from featurekit.testing import check_method

DOCS = Path(__file__).parents[1] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def test_methods_md_example_passes_the_conformance_kit(tmp_path, monkeypatch):
    # A real module, so the class pickles like a user's would.
    (tmp_path / "docs_rotnet.py").write_text(python_blocks("methods.md")[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    import docs_rotnet

    rotnet = docs_rotnet.RotNet

    class Plugin:
        @hookspecs.hookimpl
        def featurekit_register_methods(self, registry):
            registry.add_method(rotnet)

    register_plugin(Plugin(), "docs-rotnet")  # save/load look methods up by name
    try:
        results = check_method(rotnet())
    finally:
        unregister_plugin("docs-rotnet")
    assert all(r.passed for r in results)


@pytest.mark.parametrize("hook", [n for n in dir(hookspecs) if n.startswith("featurekit_")])
def test_every_hook_has_a_section_in_plugins_md(hook):
    assert f"### {hook}\n" in (DOCS / "plugins.md").read_text()


def test_readme_example_runs(capsys):
    readme = (DOCS.parent / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    assert 0.5 < float(capsys.readouterr().out.strip()) <= 1.0
