"""The YAML profile: lookup, ``${VAR}`` interpolation and strict validation.

Lookup order: ``--profile PATH``, ``$RAG_PROFILE``, the ``rag.yaml`` of the
project folder (see :func:`find_project`), then the built-in embedded default.
Every validation error names the key, the file and the line. Unknown keys are
errors: a typo must not silently fall back to a default.

Where the index lives is decided in one place, :attr:`Profile.store_path`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.errors import ConfigError

PROVIDER_KINDS = ("local", "openai", "cohere", "jina", "vllm", "infinity", "tei")
RETRIEVAL_MODES = ("hybrid", "dense", "fts")
FUSIONS = ("zscore", "rrf")  # rag.fusion
AGGREGATES = ("chunk", "section", "document")
PROFILE_NAME = "rag.yaml"
STORE_DIR = ".rag"
STORE_ENV = "RAG_STORE"  # also set by the root option --store
# Folders the walk up never enters, os.pathsep-separated, as GIT_CEILING_DIRECTORIES (the tests fence in their tmp dirs).
CEILING_ENV = "RAG_CEILING_DIRECTORIES"
LOCAL_POOLINGS = ("mean", "cls", "last", "max")


@dataclass
class ProviderConfig:
    """Where a named provider lives and how to reach it."""

    kind: str = "openai"
    base_url: str = ""
    api_key_env: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 5.0
    max_retries: int = 3
    headers: dict[str, str] = field(default_factory=dict)
    # kind local: a folder of model folders (provider/<folder name>); where a folder's own files are silent:
    path: str | None = None
    pooling: str | None = None
    normalize: bool | None = None
    max_tokens: int | None = None


@dataclass
class EmbeddingConfig:
    model: str = "local/all-MiniLM-L6-v2"
    batch_size: int = 64
    dimensions: int | None = None
    query_prefix: str = ""
    document_prefix: str = ""
    concurrency: int = 2
    fallbacks: list[str] = field(default_factory=list)
    price_per_1m_tokens: float = 0.0


@dataclass
class ChunkingConfig:
    max_tokens: int = 256
    overlap: int = 32
    encoding: str = "cl100k_base"


@dataclass
class SourcesConfig:
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)  # added to the built-in list (discover.DEFAULT_EXCLUDE)
    default_exclude: bool = True
    gitignore: bool = True
    max_file_mb: float = 20.0


@dataclass
class StoreConfig:
    uri: str = STORE_DIR
    table: str = "chunks"
    lock_timeout: float = 300.0
    commit_chunks: int = 512
    keep_runs: int = 3
    # Object stores (uri s3://bucket/prefix, gs://, az://): passed to Lance; a key ending in _env names the variable holding it.
    storage_options: dict[str, str] = field(default_factory=dict)
    # Object stores only: versions younger than this many seconds are never removed (another machine may be on them).
    remote_grace: float = 3600.0


@dataclass
class AnnConfig:
    """Approximate dense search past min_rows (rag.store.ann): the index type and the query knobs that trade recall for speed."""

    mode: Literal["auto", "off"] = "auto"
    kind: Literal["IVF_SQ", "IVF_HNSW_SQ", "IVF_PQ", "IVF_RQ"] = "IVF_SQ"
    min_rows: int = 100_000
    nprobes: int | None = None  # None: tuned at each build to hold target_recall
    refine_factor: int = 5
    ef: int = 100
    target_recall: float = 0.95


@dataclass
class IndexConfig:
    """How rag index runs: in this process (local) or on a Ray cluster (ray; address null = start or join a local one)."""

    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ann: AnnConfig = field(default_factory=AnnConfig)


@dataclass
class RetrievalConfig:
    mode: str = "hybrid"
    top_k: int = 10
    rrf_k: int = 60
    candidates: int = 50
    # How hybrid fuses dense and full text (rag.fusion): zscore (measured best on SciFact train) or rrf.
    fusion: str = "zscore"
    weights: dict[str, float] = field(default_factory=dict)  # per retriever (dense, fts); 1 when absent
    # Fuse chunks, or sections / documents scored by their best chunk (each keeps that chunk for citations).
    aggregate: str = "chunk"


@dataclass
class RerankConfig:
    model: str | None = None
    top_n: int = 5
    max_tokens_per_doc: int = 512
    fallbacks: list[str] = field(default_factory=list)
    price_per_1m_tokens: float = 0.0


@dataclass
class ChatConfig:
    model: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    context_tokens: int = 3000
    stream: bool = True
    fallbacks: list[str] = field(default_factory=list)
    price_in_per_1m_tokens: float = 0.0
    price_out_per_1m_tokens: float = 0.0


@dataclass
class AskConfig:
    top_k: int = 20
    top_n: int = 5
    # "auto": the threshold calibrated for the index at index time (rag.calibrate); a number overrides it.
    threshold: float | Literal["auto"] = "auto"


@dataclass
class CacheConfig:
    enabled: bool = True
    path: str | None = None


@dataclass
class TraceConfig:
    path: str | None = None


@dataclass
class HttpConfig:
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0


@dataclass
class LifecycleConfig:
    """Generations of the index: what ``rag reindex`` evaluates and gates on, and how many generations are kept."""

    eval: str | None = None  # the dataset rag reindex evaluates both generations on (relative to the profile)
    split: str = "test"
    min: list[str] = field(default_factory=list)  # ndcg@10=0.6: the new generation must reach it
    max_regression: list[str] = field(default_factory=list)  # ndcg@10=0.01: it may lose at most this against the live one
    max: list[str] = field(default_factory=list)  # latency.rerank.p95=300ms
    keep_generations: int = 2  # the live one and one to roll back to


@dataclass
class McpConfig:
    """``rag mcp``: what agents may do through it."""

    allow_index: bool = False  # the index tool writes; off unless the profile says so


@dataclass
class BudgetConfig:
    """Spend caps, in ``currency``, from the configured prices; a call that would pass one is refused before it is sent."""

    currency: str = "USD"
    per_run: float | None = None  # one command run (rag index, ask, eval, one mcp or serve process)
    per_day: float | None = None  # one window of window_hours (24: a UTC day)
    window_hours: float = 24.0
    path: str | None = None  # the spend ledger (SQLite); null = <store>/spend.sqlite


@dataclass
class PriceConfig:
    input_per_1m_tokens: float = 0.0
    output_per_1m_tokens: float = 0.0


@dataclass
class GatewayTokenConfig:
    """One team's bearer token for the gateway, read from the environment variable ``token_env``."""

    token_env: str = ""
    per_day: float | None = None  # this token's cap per budget window; null = only budget.per_day applies


@dataclass
class GatewayConfig:
    """``rag serve --profile``: routing provider/model requests to the profile's providers."""

    tokens: dict[str, GatewayTokenConfig] = field(default_factory=dict)
    cache: bool = True  # exact-match response cache, per request unless "cache": false or x-rag-cache: off
    state: str | None = None  # folder for the gateway's cache and spend; null = <store>/gateway
    prices: dict[str, PriceConfig] = field(default_factory=dict)  # provider/model -> price per 1M tokens


# Profile fields that say where it came from and where it applies, not keys of the YAML.
META_FIELDS = ("source", "base_dir", "lines", "store_override", "home")


@dataclass
class Profile:
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    ask: AskConfig = field(default_factory=AskConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    trace: TraceConfig = field(default_factory=TraceConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    mcp: McpConfig = field(default_factory=McpConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    # Where the profile came from; relative paths in it resolve against its folder.
    source: str = "<built-in default>"
    base_dir: Path = field(default_factory=Path.cwd)
    lines: dict[str, int] = field(default_factory=dict, repr=False)
    # Set by load_profile: --store / $RAG_STORE, and the folder whose .rag is the index when nothing names one.
    store_override: Path | None = None
    home: Path | None = None

    def where(self, dotted: str) -> str:
        """``file:line`` of a key, for messages about values that passed parsing."""
        line = self.lines.get(dotted)
        return f"{self.source}:{line}" if line else self.source

    def resolve_path(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def store_path(self) -> Path:
        """Where the index lives; every reader and writer asks here. The first that applies:
        --store / $RAG_STORE; the profile's own store.uri (relative to the profile's folder); the
        project folder found walking up (``home``); else store.uri against ``base_dir``."""
        if self.store_override is not None:
            return self.store_override
        if "://" in self.store.uri:  # an object store: this machine's caches for it (rag.store.location)
            from rag.store.location import cache_dir, is_remote

            if is_remote(self.store.uri):
                return cache_dir(self.store.uri)
        if "store.uri" in self.lines or self.home is None:
            return self.resolve_path(self.store.uri)
        return self.home / self.store.uri


BUILTIN_PROVIDERS: dict[str, ProviderConfig] = {
    "local": ProviderConfig(kind="local"),
    "openai": ProviderConfig(kind="openai", base_url="https://api.openai.com", api_key_env="OPENAI_API_KEY"),
    "openrouter": ProviderConfig(kind="openai", base_url="https://openrouter.ai/api", api_key_env="OPENROUTER_API_KEY"),
    "ollama": ProviderConfig(kind="openai", base_url="http://127.0.0.1:11434"),
    "vllm": ProviderConfig(kind="vllm", base_url="http://127.0.0.1:8000"),
    "tei": ProviderConfig(kind="tei", base_url="http://127.0.0.1:8080"),
    "infinity": ProviderConfig(kind="infinity", base_url="http://127.0.0.1:7997"),
    "cohere": ProviderConfig(kind="cohere", base_url="https://api.cohere.com", api_key_env="COHERE_API_KEY"),
    "jina": ProviderConfig(kind="jina", base_url="https://api.jina.ai", api_key_env="JINA_API_KEY"),
}


def split_model(ref: str) -> tuple[str, str]:
    """``provider/model`` -> (provider, model). Gateway models keep their own slashes."""
    provider, sep, model = ref.partition("/")
    if not sep or not provider or not model:
        raise ConfigError(f"model '{ref}' must be written provider/model, e.g. local/all-MiniLM-L6-v2 or openai/text-embedding-3-small")
    return provider, model


def provider_config(profile: Profile, name: str) -> ProviderConfig:
    if name in profile.providers:
        return profile.providers[name]
    if name in BUILTIN_PROVIDERS:
        return BUILTIN_PROVIDERS[name]
    known = ", ".join(sorted(set(BUILTIN_PROVIDERS) | set(profile.providers)))
    raise ConfigError(f"unknown provider '{name}' (in {profile.source}); define it under providers: or use one of: {known}")


# --------------------------------------------------------------------------- loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def find_project(start: Path) -> Path | None:
    """The nearest folder, from ``start`` upwards, holding ``.rag`` or ``rag.yaml``, as git finds ``.git``.

    Like nested git repositories, the nearest wins: a subfolder with its own
    index is its own project. The walk never enters a folder named in
    $RAG_CEILING_DIRECTORIES.
    """
    ceilings = {Path(p).absolute() for p in os.environ.get(CEILING_ENV, "").split(os.pathsep) if p}
    folder = start.absolute()
    while True:
        if _holds(folder, STORE_DIR, dir_=True) or _holds(folder, PROFILE_NAME, dir_=False):
            return folder
        if folder.parent == folder or folder.parent in ceilings:
            return None
        folder = folder.parent


def _holds(folder: Path, name: str, *, dir_: bool) -> bool:
    try:
        return (folder / name).is_dir() if dir_ else (folder / name).is_file()
    except OSError:  # an ancestor we may not look into holds nothing for us
        return False


def find_profile(explicit: str | None, project: Path | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"profile {explicit} not found; pass an existing file to --profile")
        return path
    env = os.environ.get("RAG_PROFILE")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"RAG_PROFILE points to {env}, which does not exist; fix or unset RAG_PROFILE")
        return path
    if project is None or not (project / PROFILE_NAME).is_file():
        return None
    # Named as the user would type it from here: rag.yaml, ../../rag.yaml
    return Path(os.path.relpath(project / PROFILE_NAME))


def store_override() -> Path | None:
    """--store / $RAG_STORE, relative to the current folder."""
    value = os.environ.get(STORE_ENV)
    return Path(os.path.expanduser(value)).absolute() if value else None


def load_profile(explicit: str | None = None) -> Profile:
    project = find_project(Path.cwd())
    path = find_profile(explicit, project)
    if path is None:
        profile = Profile()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read profile {path}: {exc}") from exc
        profile = parse_profile(text, str(path), base_dir=path.resolve().parent)
    profile.store_override = store_override()
    profile.home = project or Path.cwd()
    return profile


def parse_profile(text: str, source: str = "<string>", base_dir: Path | None = None) -> Profile:
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = " (YAML forbids tabs for indentation; use spaces)" if "\t" in text else ""
        raise ConfigError(f"{where}: malformed YAML: {problem}{hint}") from exc
    profile = Profile(source=source, base_dir=base_dir or Path.cwd())
    if node is None:
        return profile
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{source}:{node.start_mark.line + 1}: the profile must be a mapping of sections")
    _fill(profile, node, "", source, profile.lines)
    _check(profile)
    return profile


def _where(node: Any, source: str) -> str:
    return f"{source}:{node.start_mark.line + 1}"


def _fill(obj: Any, node: Any, prefix: str, source: str, lines: dict[str, int]) -> None:
    import yaml

    names = {f.name: f for f in dataclasses.fields(obj) if f.name not in META_FIELDS}
    hints = typing.get_type_hints(type(obj))
    for key_node, value_node in node.value:
        key = key_node.value
        dotted = f"{prefix}{key}"
        if key not in names:
            valid = ", ".join(names)
            raise ConfigError(f"{_where(key_node, source)}: unknown key '{dotted}'; valid keys here: {valid}")
        hint = hints[key]
        lines[dotted] = key_node.start_mark.line + 1
        if dataclasses.is_dataclass(hint):
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null"):
                continue
            if not isinstance(value_node, yaml.MappingNode):
                raise ConfigError(f"{_where(value_node, source)}: '{dotted}' must be a mapping")
            _fill(getattr(obj, key), value_node, dotted + ".", source, lines)
        elif key == "providers":
            setattr(obj, key, _providers(value_node, source, lines))
        else:
            setattr(obj, key, _convert(hint, value_node, dotted, source))


def _providers(node: Any, source: str, lines: dict[str, int]) -> dict[str, ProviderConfig]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_where(node, source)}: 'providers' must map a name to its settings")
    out: dict[str, ProviderConfig] = {}
    for key_node, value_node in node.value:
        name = key_node.value
        base = BUILTIN_PROVIDERS.get(name)
        cfg = dataclasses.replace(base) if base else ProviderConfig()
        if not isinstance(value_node, yaml.MappingNode):
            raise ConfigError(f"{_where(value_node, source)}: 'providers.{name}' must be a mapping")
        _fill(cfg, value_node, f"providers.{name}.", source, lines)
        if cfg.kind not in PROVIDER_KINDS:
            raise ConfigError(f"{_where(value_node, source)}: providers.{name}.kind '{cfg.kind}' is not one of {', '.join(PROVIDER_KINDS)}")
        out[name] = cfg
    return out


def _filled(cls: Any, node: Any, dotted: str, source: str) -> Any:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_where(node, source)}: '{dotted}' must be a mapping")
    obj = cls()
    _fill(obj, node, dotted + ".", source, {})
    return obj


def _interpolate(value: str, dotted: str, where: str) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: '{dotted}' uses ${{{name}}}, which is not set; export {name} or give a default as ${{{name}:-value}}")

    return _VAR.sub(sub, value)


def _convert(hint: Any, node: Any, dotted: str, source: str) -> Any:
    import yaml

    where = _where(node, source)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:
            try:
                return _convert(alternative, node, dotted, source)
            except ConfigError:
                pass
        try:
            return _convert(inner[-1], node, dotted, source)
        except ConfigError:
            if len(inner) == 1:
                raise
        shown = " or ".join(_type_name(a) for a in inner)
        got = f", got '{node.value}'" if isinstance(node, yaml.ScalarNode) else ""
        raise ConfigError(f"{where}: '{dotted}' must be {shown}{got}") from None
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"{where}: '{dotted}' must be a list")
        return [_convert(args[0], item, dotted, source) for item in node.value]
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{where}: '{dotted}' must be a mapping")
        if dataclasses.is_dataclass(args[1]):  # named entries with settings of their own (gateway.tokens)
            return {k.value: _filled(args[1], v, f"{dotted}.{k.value}", source) for k, v in node.value}
        return {k.value: _convert(args[1], v, f"{dotted}.{k.value}", source) for k, v in node.value}
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{where}: '{dotted}' must be a single {hint.__name__} value")
    raw: str = _interpolate(node.value, dotted, where) if isinstance(node.value, str) else str(node.value)
    tag = node.tag.rsplit(":", 1)[-1]
    try:
        if hint is bool:
            if raw.lower() in ("true", "yes", "on", "1"):
                return True
            if raw.lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if hint is int:
            if tag == "float":
                raise ValueError
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is str:
            if tag == "null":
                raise ValueError
            return raw
        if origin is Literal:
            if raw in args:
                return raw
            raise ValueError
    except ValueError:
        raise ConfigError(f"{where}: '{dotted}' must be {_type_name(hint)}, got '{node.value}'") from None
    raise ConfigError(f"{where}: '{dotted}' has an unsupported type")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " or ".join(str(a) for a in typing.get_args(hint))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(hint, str(hint))


def _check(p: Profile) -> None:
    """Cross-field rules that a type alone cannot express."""
    rules: list[tuple[bool, str, str]] = [
        (p.embedding.batch_size >= 1, "embedding.batch_size", "must be at least 1"),
        (p.embedding.concurrency >= 1, "embedding.concurrency", "must be at least 1"),
        (p.chunking.max_tokens >= 16, "chunking.max_tokens", "must be at least 16"),
        (0 <= p.chunking.overlap < p.chunking.max_tokens, "chunking.overlap", "must be at least 0 and below chunking.max_tokens"),
        (p.retrieval.mode in RETRIEVAL_MODES, "retrieval.mode", f"must be one of {', '.join(RETRIEVAL_MODES)}"),
        (p.retrieval.top_k >= 1, "retrieval.top_k", "must be at least 1"),
        (p.retrieval.rrf_k >= 1, "retrieval.rrf_k", "must be at least 1"),
        (p.retrieval.candidates >= 1, "retrieval.candidates", "must be at least 1"),
        (p.retrieval.fusion in FUSIONS, "retrieval.fusion", f"must be one of {', '.join(FUSIONS)}"),
        (set(p.retrieval.weights) <= {"dense", "fts"}, "retrieval.weights", "takes the keys dense and fts"),
        (all(w >= 0 for w in p.retrieval.weights.values()), "retrieval.weights", "must be at least 0"),
        (p.retrieval.aggregate in AGGREGATES, "retrieval.aggregate", f"must be one of {', '.join(AGGREGATES)}"),
        (p.ask.top_k >= 1, "ask.top_k", "must be at least 1"),
        (p.ask.top_n >= 1, "ask.top_n", "must be at least 1"),
        (p.rerank.top_n >= 1, "rerank.top_n", "must be at least 1"),
        (p.sources.max_file_mb > 0, "sources.max_file_mb", "must be above 0"),
        (p.store.commit_chunks >= 1, "store.commit_chunks", "must be at least 1"),
        (p.store.lock_timeout >= 0, "store.lock_timeout", "must be at least 0"),
        (p.store.keep_runs >= 2, "store.keep_runs", "must be at least 2 (a query may still be reading the previous run's version)"),
        (p.store.remote_grace >= 0, "store.remote_grace", "must be at least 0 (seconds)"),
        (
            p.lifecycle.keep_generations >= 2,
            "lifecycle.keep_generations",
            "must be at least 2 (a query may still be reading the generation before the live one)",
        ),
        (p.index.ann.min_rows >= 1, "index.ann.min_rows", "must be at least 1"),
        (p.index.ann.nprobes is None or p.index.ann.nprobes >= 1, "index.ann.nprobes", "must be at least 1, or null (tuned)"),
        (0 < p.index.ann.target_recall <= 1, "index.ann.target_recall", "must be in (0, 1]"),
        (p.index.ann.refine_factor >= 1, "index.ann.refine_factor", "must be at least 1"),
        (p.index.ann.ef >= 1, "index.ann.ef", "must be at least 1"),
        (p.http.backoff_base >= 0, "http.backoff_base", "must be at least 0"),
        (p.http.backoff_max >= 0, "http.backoff_max", "must be at least 0"),
        (p.http.breaker_failures >= 0, "http.breaker_failures", "must be at least 0 (0 turns the breaker off)"),
        (p.http.breaker_cooldown >= 0, "http.breaker_cooldown", "must be at least 0"),
        (p.budget.window_hours > 0, "budget.window_hours", "must be above 0"),
        (p.budget.per_run is None or p.budget.per_run >= 0, "budget.per_run", "must be at least 0"),
        (p.budget.per_day is None or p.budget.per_day >= 0, "budget.per_day", "must be at least 0"),
    ]
    for team, tok in p.gateway.tokens.items():
        rules.append((bool(tok.token_env), f"gateway.tokens.{team}", "needs token_env: the name of the variable holding the token"))
    for name, cfg in p.providers.items():  # a zero timeout fails every call; negative retries make no sense
        rules += [
            (cfg.timeout > 0, f"providers.{name}.timeout", "must be above 0 seconds"),
            (cfg.connect_timeout > 0, f"providers.{name}.connect_timeout", "must be above 0 seconds"),
            (cfg.max_retries >= 0, f"providers.{name}.max_retries", "must be at least 0"),
            (cfg.pooling in (None, *LOCAL_POOLINGS), f"providers.{name}.pooling", f"must be one of {', '.join(LOCAL_POOLINGS)}"),
            (cfg.max_tokens is None or cfg.max_tokens >= 1, f"providers.{name}.max_tokens", "must be at least 1"),
        ]
        local_keys = [k for k in ("path", "pooling", "normalize", "max_tokens") if getattr(cfg, k) is not None]
        rules.append(
            (cfg.kind == "local" or not local_keys, f"providers.{name}.{(local_keys or ['path'])[0]}", "applies to kind local only")
        )
    for ok, key, message in rules:
        if not ok:
            raise ConfigError(f"{p.where(key)}: '{key}' {message}")
    for ref in [p.embedding.model, *p.embedding.fallbacks, *p.rerank.fallbacks, *p.chat.fallbacks]:
        provider_config(p, split_model(ref)[0])
    for optional in (p.rerank.model, p.chat.model):
        if optional:
            provider_config(p, split_model(optional)[0])
