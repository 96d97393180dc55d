from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.pricing import (
    ModelPrice,
    PriceConfigError,
    PriceTable,
    PriceTableConfig,
    event_cost,
)
from stream.settings import CONFIG_DIR

SHIPPED = CONFIG_DIR / "prices.yaml"

GPT_4O = ModelPrice(input=2.50, output=10.00, cached_input=1.25)
# Claude-Sonnet-style cache: input $3/M, write 1.25x input, read 0.1x input.
SONNET = ModelPrice(input=3.00, output=15.00, cache_write=3.75, cached_input=0.30)


@pytest.fixture(scope="module")
def shipped() -> PriceTable:
    return PriceTable.load(SHIPPED)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    return path


# --- worked figures -------------------------------------------------------------------


def test_gpt_4o_2000_input_and_500_output_tokens_cost_one_cent():
    assert event_cost(GPT_4O, 2_000, 500, 0, 0) == pytest.approx(0.01)


def test_gpt_4o_a_billion_input_and_250_million_output_tokens_cost_5000_usd():
    assert event_cost(GPT_4O, 1_000_000_000, 250_000_000, 0, 0) == pytest.approx(5_000.0)


def test_a_cache_written_once_and_read_eight_times_costs_6_15_against_24_uncached():
    # One write of 1M tokens: 1M x $3.75/M = $3.75. Eight reads of those 1M tokens:
    # 8 x 1M x $0.30/M = $2.40. Together $6.15.
    cached = event_cost(SONNET, 0, 0, 0, 1_000_000) + 8 * event_cost(SONNET, 0, 0, 1_000_000, 0)
    assert cached == pytest.approx(6.15)
    # Without the cache the same 8 requests send 8 x 1M input tokens at $3/M = $24.
    uncached = 8 * event_cost(SONNET, 1_000_000, 0, 0, 0)
    assert uncached == pytest.approx(24.0)


def test_cost_usd_prices_each_disjoint_token_kind_at_its_own_price(shipped: PriceTable):
    cost = shipped.cost_usd(
        "anthropic", "claude-sonnet-4-5", 1_000_000, 1_000_000, 1_000_000, 1_000_000
    )
    assert cost == pytest.approx(3.00 + 15.00 + 0.30 + 3.75)


def test_cache_prices_default_to_the_input_price():
    price = ModelPrice(input=2.0, output=8.0)
    assert (price.cached_input, price.cache_write) == (2.0, 2.0)


@given(st.integers(0, 10**8), st.integers(0, 10**8), st.integers(0, 10**8), st.integers(0, 10**8))
def test_event_cost_is_the_sum_of_its_token_kinds(inp: int, out: int, read: int, wrote: int):
    whole = event_cost(SONNET, inp, out, read, wrote)
    parts = (
        event_cost(SONNET, inp, 0, 0, 0)
        + event_cost(SONNET, 0, out, 0, 0)
        + event_cost(SONNET, 0, 0, read, 0)
        + event_cost(SONNET, 0, 0, 0, wrote)
    )
    assert whole == pytest.approx(parts)
    assert whole >= 0


# --- the shipped table ----------------------------------------------------------------

REQUIRED = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("openai", "gpt-4.1-mini"),
    ("openai", "o3"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.5-flash"),
    ("bedrock", "anthropic.claude-sonnet-4-20250514-v1:0"),
]

# The exact pairs the traffic simulator emits: each must be priced from the table.
SIMULATED = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1"),
    ("openai", "gpt-4.1-mini"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("google", "gemini-2.5-flash"),
    ("google", "gemini-2.5-pro"),
    ("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0"),
]


@pytest.mark.parametrize(("provider", "family"), REQUIRED)
def test_the_shipped_table_lists_every_required_family(shipped: PriceTable, provider, family):
    assert family in shipped.config.providers[provider].models


@pytest.mark.parametrize(("provider", "model"), SIMULATED)
def test_every_model_the_simulator_emits_is_known(shipped: PriceTable, provider, model):
    price, known = shipped.lookup(provider, model)
    assert known
    assert price != shipped.fallback


def test_the_shipped_table_prices_gpt_4o_at_its_list_price(shipped: PriceTable):
    assert shipped.cost_usd("openai", "gpt-4o", 2_000, 500) == pytest.approx(0.01)


def test_shipped_anthropic_cache_prices_are_1_25x_and_0_1x_input(shipped: PriceTable):
    for family, price in shipped.config.providers["anthropic"].models.items():
        if family == "claude-3-haiku":
            continue  # listed rounded to the cent: $0.30 write, $0.03 read
        assert price.cache_write == pytest.approx(1.25 * price.input)
        assert price.cached_input == pytest.approx(0.1 * price.input)


def test_shipped_openai_cache_writes_cost_plain_input(shipped: PriceTable):
    for price in shipped.config.providers["openai"].models.values():
        assert price.cache_write == price.input
        assert price.cached_input <= price.input


@pytest.mark.parametrize(
    ("provider", "model", "entry"),
    [
        ("openai", "gpt-4o-2024-08-06", ("openai", "gpt-4o")),
        ("openai", "gpt-4o-mini-2024-07-18", ("openai", "gpt-4o-mini")),
        ("openai", "gpt-4.1-mini-2025-04-14", ("openai", "gpt-4.1-mini")),
        ("openai", "o3-2025-04-16", ("openai", "o3")),
        ("openai", "gpt-4o-2024-05-13", ("openai", "gpt-4o-2024-05-13")),  # exact entry wins
        ("anthropic", "claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5")),
        ("anthropic", "claude-3-5-haiku-20241022", ("anthropic", "claude-3-5-haiku")),
        ("anthropic", "claude-opus-4-1-20250805", ("anthropic", "claude-opus-4-1")),
        ("anthropic", "claude-opus-4-20250514", ("anthropic", "claude-opus-4")),
        ("anthropic", "claude-3-7-sonnet-latest", ("anthropic", "claude-3-7-sonnet")),
        ("anthropic", "claude-sonnet-4-0", ("anthropic", "claude-sonnet-4")),
        ("google", "gemini-2.5-flash-preview-05-20", ("google", "gemini-2.5-flash")),
        ("google", "gemini-2.5-flash-lite-preview-06-17", ("google", "gemini-2.5-flash-lite")),
        ("google", "models/gemini-2.5-pro", ("google", "gemini-2.5-pro")),
        ("google", "gemini-2.0-flash-001", ("google", "gemini-2.0-flash")),
        (
            "bedrock",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            ("bedrock", "anthropic.claude-sonnet-4-20250514-v1:0"),
        ),
        ("bedrock", "amazon.nova-pro-v1:0", ("bedrock", "amazon.nova-pro-v1:0")),
        ("bedrock", "meta.llama3-70b-instruct-v1:0", ("bedrock", "meta.llama3-70b-instruct-v1:0")),
        ("azure", "gpt-4o", ("azure", "gpt-4o")),
        ("azure", "gpt-35-turbo-0125", ("azure", "gpt-3.5-turbo")),
    ],
)
def test_names_and_dated_snapshots_resolve_to_their_family(
    shipped: PriceTable, provider, model, entry
):
    assert shipped.resolve(provider, model) == entry


def test_a_mini_snapshot_is_priced_as_mini_not_as_its_bigger_sibling(shipped: PriceTable):
    mini, known = shipped.lookup("openai", "gpt-4o-mini-2024-07-18")
    assert known
    assert mini == shipped.config.providers["openai"].models["gpt-4o-mini"]
    assert mini != shipped.config.providers["openai"].models["gpt-4o"]


@pytest.mark.parametrize("model", ["o3-pro", "gpt-4o-realtime-preview", "claude-opus-4-9"])
def test_a_different_model_is_never_taken_for_a_snapshot(shipped: PriceTable, model):
    # o3-pro costs 10x o3: a suffix that is not a date must not match the shorter name.
    resolved = shipped.resolve("openai", model)
    assert resolved is None or resolved[1] == model


def test_lookups_ignore_case_and_surrounding_space(shipped: PriceTable):
    assert shipped.resolve("OpenAI", " GPT-4o-Mini ") == ("openai", "gpt-4o-mini")
    assert shipped.lookup("Anthropic", "Claude-Sonnet-4-5") == shipped.lookup(
        "anthropic", "claude-sonnet-4-5"
    )


def test_azure_inherits_openai_prices(shipped: PriceTable):
    assert shipped.lookup("azure", "gpt-4o") == shipped.lookup("openai", "gpt-4o")


@pytest.mark.parametrize(
    ("provider", "model", "entry"),
    [
        ("openrouter", "gpt-4o", ("openai", "gpt-4o")),
        ("openrouter", "openai/gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("openrouter", "anthropic/claude-sonnet-4.5", ("anthropic", "claude-sonnet-4-5")),
        ("vertex_ai", "claude-sonnet-4-5@20250929", ("anthropic", "claude-sonnet-4-5")),
        ("vertex_ai", "gemini-2.5-pro", ("google", "gemini-2.5-pro")),
    ],
)
def test_a_model_known_under_another_provider_is_matched_by_name(
    shipped: PriceTable, provider, model, entry
):
    assert shipped.resolve(provider, model) == entry
    assert shipped.lookup(provider, model)[1]


def test_azure_matches_openai_by_name_even_in_a_table_without_azure():
    table = PriceTable.from_config(
        PriceTableConfig.model_validate(
            {
                "fallback": {"input": 5, "output": 15},
                "providers": {"openai": {"models": {"gpt-4o": {"input": 2.5, "output": 10}}}},
            }
        )
    )
    assert table.resolve("azure", "gpt-4o") == ("openai", "gpt-4o")
    assert table.lookup("azure", "gpt-4o") == (ModelPrice(input=2.5, output=10), True)


def test_an_unknown_model_is_priced_by_fallback_and_counted():
    table = PriceTable.load(SHIPPED)
    price, known = table.lookup("acme-llm", "mystery-1")
    assert (price, known) == (table.fallback, False)
    cost = table.cost_usd("acme-llm", "mystery-1", 1_000_000, 1_000_000)
    assert cost == pytest.approx(table.fallback.input + table.fallback.output)
    table.cost_usd("acme-llm", "mystery-1", 10, 10)
    table.cost_usd("openai", "gpt-4o", 10, 10)
    assert table.unknown_models == {("acme-llm", "mystery-1"): 2}


def test_lookup_alone_does_not_count_unknown_models():
    table = PriceTable.load(SHIPPED)
    table.lookup("acme-llm", "mystery-1")
    assert not table.unknown_models


def test_the_resolved_pair_cache_stays_bounded():
    table = PriceTable.load(SHIPPED)
    table.max_cached = 50
    for i in range(500):
        table.cost_usd("openai", f"unknown-{i}", 1, 1)
    assert len(table._cache) <= 50
    assert table.cost_usd("openai", "gpt-4o", 2_000, 500) == pytest.approx(0.01)


def test_distinct_unknown_models_beyond_the_limit_are_counted_together():
    table = PriceTable.load(SHIPPED)
    table.max_unknown = 3
    for i in range(10):
        table.cost_usd("x", f"m{i}", 1, 1)
    assert len(table.unknown_models) == 4
    assert table.unknown_models[("*", "*")] == 7
    assert sum(table.unknown_models.values()) == 10


# --- refusing bad files ---------------------------------------------------------------

GOOD = """\
version: 1
fallback: {input: 5, output: 15}
providers:
  openai:
    models:
      gpt-4o: {input: 2.5, output: 10}
"""


def test_a_minimal_file_loads_from_disk(tmp_path: Path):
    table = PriceTable.load(write(tmp_path, GOOD))
    assert table.lookup("openai", "gpt-4o") == (ModelPrice(input=2.5, output=10), True)


@pytest.mark.parametrize(
    ("text", "line", "field", "value", "why"),
    [
        (
            GOOD.replace("input: 2.5", "input: -2.5"),
            6,
            "providers.openai.models.gpt-4o.input",
            "-2.5",
            "greater than or equal to 0",
        ),
        (
            GOOD.replace("output: 10}", "output: 10, cache_read: 1}"),
            6,
            "providers.openai.models.gpt-4o.cache_read",
            "1",
            "valid: input, output, cached_input, cache_write",
        ),
        (
            GOOD.replace("output: 10}", "output: ten}"),
            6,
            "providers.openai.models.gpt-4o.output",
            "'ten'",
            "valid number",
        ),
        (
            GOOD.replace("gpt-4o:", "GPT-4o:"),
            6,
            "providers.openai.models.GPT-4o",
            "'GPT-4o'",
            "lower case",
        ),
        (
            GOOD + "    snapshot_suffixes: ['-(\\d{4}']\n",
            7,
            "providers.openai.snapshot_suffixes.0",
            "'-(\\\\d{4}'",
            "regular expression",
        ),
        (
            GOOD + "  azure: {inherits: opneai}\n",
            7,
            "providers.azure.inherits",
            "'opneai'",
            "valid: openai",
        ),
        (
            GOOD + "    aliases: {chatgpt-4o-latest: gpt-40}\n",
            7,
            "providers.openai.aliases.chatgpt-4o-latest",
            "'gpt-40'",
            "not a model",
        ),
        (GOOD.replace("version: 1", "version: 2"), 1, "version", "2", "1"),
    ],
)
def test_a_bad_file_is_refused_naming_file_line_field_value_and_reason(
    tmp_path: Path, text: str, line: int, field: str, value: str, why: str
):
    path = write(tmp_path, text)
    with pytest.raises(PriceConfigError) as caught:
        PriceTable.load(path)
    message = str(caught.value)
    assert f"{path}:{line}: {field}: " in message
    assert why in message
    assert f"(got {value})" in message


def test_a_file_without_fallback_is_refused(tmp_path: Path):
    path = write(tmp_path, GOOD.replace("fallback: {input: 5, output: 15}\n", ""))
    with pytest.raises(PriceConfigError, match=rf"^{path}: fallback: missing"):
        PriceTable.load(path)


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path):
    path = write(tmp_path, GOOD + "  google: {models: [\n")
    with pytest.raises(PriceConfigError, match=rf"^{path}:\d+: YAML syntax error"):
        PriceTable.load(path)
    path = write(tmp_path, "version: 1\nfallback: {input: 5, output: 15\nproviders: {}\n")
    with pytest.raises(PriceConfigError, match=rf"^{path}:3: YAML syntax error"):
        PriceTable.load(path)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path):
    with pytest.raises(PriceConfigError, match="nope.yaml: cannot read"):
        PriceTable.load(tmp_path / "nope.yaml")


def test_an_inheritance_cycle_is_refused():
    with pytest.raises(ValueError, match="providers.a.inherits: inherits in a cycle"):
        PriceTableConfig.model_validate(
            {
                "fallback": {"input": 1, "output": 1},
                "providers": {"a": {"inherits": "b"}, "b": {"inherits": "a"}},
            }
        )


def test_a_bad_input_price_is_reported_once_not_again_for_the_cache_prices_it_feeds(
    tmp_path: Path,
):
    path = write(tmp_path, GOOD.replace("input: 2.5", "input: -2.5"))
    with pytest.raises(PriceConfigError) as caught:
        PriceTable.load(path)
    assert str(caught.value).count("\n") == 0
