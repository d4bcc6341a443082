"""The README's recommended recipe is the one the quality suite trains with (docs/quality.md's tables)."""

import importlib.util
import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _suite_recipe() -> dict:
    spec = importlib.util.spec_from_file_location("quality_run", os.path.join(REPO, "benchmarks", "quality", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {**module.RECIPE, "max_steps": module.STEPS}


def _yaml_after(path: str, heading: str) -> dict:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index(heading):]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


def test_the_readme_and_docs_recipes_are_the_quality_suites():
    suite = _suite_recipe()
    suite.pop("model_name_or_path")  # the suite's tiny model; the README's reader names their own
    for path, heading in (("README.md", "## The recommended recipe"), ("docs/quality.md", "### The recommended recipe")):
        assert _yaml_after(os.path.join(REPO, path), heading) == suite, path
