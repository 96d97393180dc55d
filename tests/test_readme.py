"""The README stays true: its configuration reference is the one the models generate."""

from pathlib import Path

from stream.commands.reference import reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_configuration_reference_matches_the_settings_models():
    text = README.read_text()
    start = text.index("<!-- reference:start -->") + len("<!-- reference:start -->")
    end = text.index("<!-- reference:end -->")
    assert text[start:end].strip() == reference().strip(), (
        "README reference is stale: regenerate it with `python -m stream.commands.reference`"
    )


def test_the_readme_leads_with_the_two_commands():
    text = README.read_text()
    assert text.index("make demo") < text.index("## What it detects")
    assert "make test" in text
