"""Build providers named ``provider/model`` in the profile.

Local models are built here directly; HTTP dialects are looked up by the
provider's ``kind``.
"""

from __future__ import annotations

from rag.errors import ConfigError
from rag.profile import Profile, provider_config, split_model
from rag.providers.base import Embedder


def make_embedder(profile: Profile, ref: str | None = None) -> Embedder:
    ref = ref or profile.embedding.model
    name, model = split_model(ref)
    cfg = provider_config(profile, name)
    if cfg.kind == "local":
        from rag.providers.local import LocalEmbedder

        return LocalEmbedder(model, batch_size=min(profile.embedding.batch_size, 32))
    raise ConfigError(f"embedding provider kind '{cfg.kind}' ({ref}) is not supported yet")
