r"""Model prices (config/prices.yaml) and what one usage event cost, in USD.

Prices are USD per 1,000,000 tokens. Token counts on an event are disjoint (the usage
event contract): ``input_tokens`` are uncached input only; cache reads and cache writes
are counted apart. Names match case-insensitively; dated snapshots match their family;
a model unknown under its provider may match by name under another; anything else is
priced by ``fallback`` and counted in ``PriceTable.unknown_models``.

>>> table = PriceTable.from_config(PriceTableConfig.model_validate({
...     "version": 1,
...     "fallback": {"input": 5, "output": 15},
...     "providers": {"openai": {
...         "snapshot_suffixes": [r"-\d{4}-\d{2}-\d{2}"],
...         "models": {"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}},
...     }},
... }))
>>> table.cost_usd("openai", "GPT-4o-2024-08-06", input_tokens=2_000, output_tokens=500)
0.01
>>> table.resolve("azure", "gpt-4o")
('openai', 'gpt-4o')
>>> table.cost_usd("openai", "gpt-9", input_tokens=1_000_000, output_tokens=0)
5.0
>>> table.unknown_models
Counter({('openai', 'gpt-9'): 1})
"""

from __future__ import annotations

import re
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from stream.settings.yamlsource import ConfigFileError, Lines, line_of, load_yaml

TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens


class PriceConfigError(ConfigFileError):
    """A price table that cannot be used; names the file, line, field path, value and why."""


def _lower_case(name: str) -> str:
    if name != name.lower():
        raise PydanticCustomError(
            "lower_case",
            "must be lower case, because model names match ignoring case: write {lower}",
            {"lower": repr(name.lower())},
        )
    return name


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PydanticCustomError(
            "regex", "not a valid regular expression: {why}", {"why": str(exc)}
        ) from None
    return pattern


Name = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_lower_case)]
UsdPerMillion = Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPrice(_Section):
    """One model's prices, USD per 1,000,000 tokens."""

    input: UsdPerMillion = Field(description="Uncached input tokens, USD per 1M tokens.")
    output: UsdPerMillion = Field(
        description="Output tokens, reasoning/thinking included, USD per 1M tokens."
    )
    # A provider without a cache discount bills cached and written tokens as plain input.
    cached_input: UsdPerMillion = Field(
        default_factory=lambda fields: fields["input"],
        description="Input tokens read from the prompt cache, USD per 1M tokens; default: input.",
    )
    cache_write: UsdPerMillion = Field(
        default_factory=lambda fields: fields["input"],
        description="Input tokens written to the prompt cache, USD per 1M tokens; default: input.",
    )


class ProviderPrices(_Section):
    """The models one provider sells, and how the names it reports map to them."""

    inherits: Name | None = Field(
        default=None,
        description="Provider whose models, aliases, prefixes and suffixes this one reuses "
        "(azure: openai); its own entries win.",
    )
    models: dict[Name, ModelPrice] = Field(
        default_factory=dict, description="Model family name (lower case) -> its prices."
    )
    aliases: dict[Name, Name] = Field(
        default_factory=dict,
        description="Another exact name -> a family in models (own or inherited).",
    )
    strip_prefixes: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Literal prefixes removed before matching (Bedrock 'us.', Gemini 'models/').",
    )
    snapshot_suffixes: list[Annotated[str, AfterValidator(_regex)]] = Field(
        default_factory=list,
        description="Regexes: a known name plus one or more of these is a snapshot of it "
        "(gpt-4o-2024-08-06 -> gpt-4o).",
    )


class PriceTableConfig(_Section):
    """The whole price file: a fallback and the providers' price lists."""

    version: Literal[1] = Field(default=1, description="Format of this file; 1.")
    fallback: ModelPrice = Field(description="Prices for models not in the table.")
    providers: dict[Name, ProviderPrices] = Field(
        default_factory=dict, description="Provider name as events report it -> its prices."
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> PriceTableConfig:
        problems = list(_reference_problems(self.providers))
        if problems:
            summary = "; ".join(f"{'.'.join(loc)}: {why} (got {v!r})" for loc, v, why in problems)
            raise PydanticCustomError(
                "reference",
                "{summary}",
                {
                    "summary": summary,
                    "problems": problems,
                },
            )
        return self


Problem = tuple[tuple[str, ...], object, str]  # field path, bad value, reason


def _reference_problems(providers: dict[str, ProviderPrices]) -> typing.Iterator[Problem]:
    for name, provider in providers.items():
        seen = [name]
        parent = provider.inherits
        while parent is not None:
            if parent not in providers:
                valid = ", ".join(sorted(p for p in providers if p != name)) or "(none)"
                yield ("providers", name, "inherits"), parent, f"no such provider; valid: {valid}"
                break
            if parent in seen:
                yield ("providers", name, "inherits"), provider.inherits, "inherits in a cycle"
                break
            seen.append(parent)
            parent = providers[parent].inherits
        else:
            models = set().union(*(providers[p].models for p in seen))
            for alias, family in provider.aliases.items():
                if family not in models:
                    where = f"in providers.{name}.models" + (
                        f" or its inherited {', '.join(seen[1:])}" if len(seen) > 1 else ""
                    )
                    yield ("providers", name, "aliases", alias), family, f"not a model {where}"


def event_cost(
    price: ModelPrice,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float:
    """What one event cost, USD, from disjoint token counts (tokens) and ``price``.

    >>> event_cost(ModelPrice(input=3, output=15), 1_000_000, 0, 0, 0)
    3.0
    """
    return (
        input_tokens * price.input
        + output_tokens * price.output
        + cached_input_tokens * price.cached_input
        + cache_write_tokens * price.cache_write
    ) / TOKENS_PER_PRICE_UNIT


@dataclass(frozen=True, slots=True)
class _Catalog:
    """One provider's names, with its inherited providers' entries merged in."""

    provider: str
    families: dict[str, str]  # every known name (family or alias) -> family
    prices: dict[str, ModelPrice]  # family -> prices
    prefixes: tuple[str, ...]
    snapshot: re.Pattern[str] | None
    by_length: tuple[str, ...]  # known names, longest first

    def family(self, name: str) -> str | None:
        """The family ``name`` (lower case) is, or a snapshot of; None if unknown here."""
        candidates = []
        # Paths (models/gemini-2.5-pro, a Bedrock ARN) name the model in their last part.
        for base in (name, name.rsplit("/", 1)[1]) if "/" in name else (name,):
            candidates.append(base)
            for prefix in self.prefixes:
                if base.startswith(prefix):
                    candidates.append(base[len(prefix) :])
                    break
        for candidate in candidates:
            if candidate in self.families:
                return self.families[candidate]
        if self.snapshot is None:
            return None
        for candidate in candidates:
            # Longest first, so gpt-4o-mini-2024-07-18 is gpt-4o-mini, never gpt-4o.
            for known in self.by_length:
                if candidate.startswith(known) and self.snapshot.fullmatch(candidate, len(known)):
                    return self.families[known]
        return None


def _catalogs(providers: dict[str, ProviderPrices]) -> dict[str, _Catalog]:
    catalogs: dict[str, _Catalog] = {}
    for name in providers:
        chain = [name]
        while (parent := providers[chain[-1]].inherits) is not None:
            chain.append(parent)
        families: dict[str, str] = {}
        prices: dict[str, ModelPrice] = {}
        prefixes: list[str] = []
        suffixes: list[str] = []
        for member in reversed(chain):  # the provider's own entries win over inherited ones
            entry = providers[member]
            prices.update(entry.models)
            families.update({family: family for family in entry.models})
            families.update(entry.aliases)
            prefixes += [p.lower() for p in entry.strip_prefixes if p.lower() not in prefixes]
            suffixes += [s for s in entry.snapshot_suffixes if s not in suffixes]
        snapshot = re.compile(f"(?:{'|'.join(suffixes)})+", re.I) if suffixes else None
        by_length = tuple(sorted(families, key=len, reverse=True))
        catalogs[name] = _Catalog(name, families, prices, tuple(prefixes), snapshot, by_length)
    return catalogs


class PriceTable:
    """Prices events by (provider, model), fast, and counts the models it does not know."""

    max_cached = 100_000  # resolved (provider, model) pairs kept; cleared when exceeded
    max_unknown = 10_000  # distinct unknown pairs counted; the rest count under ("*", "*")

    def __init__(self, config: PriceTableConfig) -> None:
        self.config = config
        self.fallback = config.fallback
        self.unknown_models: Counter[tuple[str, str]] = Counter()
        self._catalogs = _catalogs(config.providers)
        self._cache: dict[tuple[str, str], tuple[ModelPrice, bool]] = {}

    @classmethod
    def from_config(cls, config: PriceTableConfig) -> PriceTable:
        """A table from an already validated config."""
        return cls(config)

    @classmethod
    def load(cls, path: Path | str) -> PriceTable:
        """The table in a YAML file; raises :class:`PriceConfigError` naming what is wrong."""
        file = Path(path)
        try:
            data, lines = load_yaml(file)
        except ConfigFileError as exc:
            raise PriceConfigError(str(exc)) from None
        try:
            return cls(PriceTableConfig.model_validate(data))
        except ValidationError as exc:
            raise PriceConfigError(_describe(file, exc, lines)) from None

    def resolve(self, provider: str, model: str) -> tuple[str, str] | None:
        """The (provider, family) entry that prices this pair, or None for the fallback."""
        provider, model = provider.strip().lower(), model.strip().lower()
        own = self._catalogs.get(provider)
        if own is not None and (family := own.family(model)) is not None:
            return own.provider, family
        if "/" in model:  # gateways write vendor/model: openrouter's "openai/gpt-4o"
            vendor, _, rest = model.rpartition("/")
            named = self._catalogs.get(vendor.rpartition("/")[2])
            if named is not None and (family := named.family(rest)) is not None:
                return named.provider, family
        for catalog in self._catalogs.values():
            if catalog is not own and (family := catalog.family(model)) is not None:
                return catalog.provider, family
        return None

    def lookup(self, provider: str, model: str) -> tuple[ModelPrice, bool]:
        """(prices in USD per 1M tokens, known); unknown pairs get the fallback, uncounted."""
        hit = self._cache.get((provider, model))
        return hit if hit is not None else self._remember(provider, model)

    def cost_usd(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """One event's cost, USD, from disjoint token counts; counts fallback-priced models."""
        hit = self._cache.get((provider, model))
        price, known = hit if hit is not None else self._remember(provider, model)
        if not known:
            self._count_unknown(provider, model)
        return event_cost(
            price, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens
        )

    def _remember(self, provider: str, model: str) -> tuple[ModelPrice, bool]:
        entry = self.resolve(provider, model)
        hit = (
            (self.fallback, False)
            if entry is None
            else (self._catalogs[entry[0]].prices[entry[1]], True)
        )
        if len(self._cache) >= self.max_cached:
            self._cache.clear()  # a flood of distinct names must not grow memory without end
        self._cache[(provider, model)] = hit
        return hit

    def _count_unknown(self, provider: str, model: str) -> None:
        key = (provider, model)
        if key not in self.unknown_models and len(self.unknown_models) >= self.max_unknown:
            key = ("*", "*")
        self.unknown_models[key] += 1


def _describe(file: Path, exc: ValidationError, lines: Lines) -> str:
    """One line per problem: ``file:line: field.path: reason (got value)``."""
    out = []
    for err in exc.errors(include_url=False):
        if err["type"] == "default_factory_not_called":
            continue  # a cache price defaulting to a bad input price: that one is reported
        loc = tuple(part for part in err["loc"] if part != "[key]")
        problems = (err.get("ctx") or {}).get("problems")
        if problems is None:
            problems = [(loc, err.get("input"), _reason(loc, err))]
        for where, value, why in problems:
            line = line_of(lines, where)
            field = ".".join(str(part) for part in where) or "(root)"
            shown = "" if err["type"] == "missing" else f" (got {value!r:.80})"
            out.append(f"{file}{f':{line}' if line else ''}: {field}: {why}{shown}")
    return "\n".join(out)


def _reason(loc: tuple[str | int, ...], err: Any) -> str:
    if err["type"] == "extra_forbidden":
        section = _section_at(loc[:-1])
        if section is not None:
            return f"unknown field; valid: {', '.join(section.model_fields)}"
    if err["type"] == "missing" and loc and loc[-1] == "fallback":
        return "missing: the prices for models not in the table, e.g. {input: 5, output: 15}"
    return str(err["msg"])


def _section_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The config model that holds the mapping at ``loc``, to list its valid fields."""
    node: Any = PriceTableConfig
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return None
            node = field.annotation
        else:  # a dict[str, X]: the key names an entry, the value is an X
            args = typing.get_args(node)
            node = args[-1] if args else None
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None
