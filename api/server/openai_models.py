"""The OpenAI-compatible model list (`GET /v1/models`, `GET /v1/models/{id}`) and the one check of a
requested model name, shared with `/v1/embeddings`.

A service serves one model; a request may name it by its configured name (a hub name or a folder),
by that name's last part (`all-MiniLM-L6-v2` for `sentence-transformers/all-MiniLM-L6-v2`), or by an
alias of SEMSEARCH_MODEL_ALIASES (for tools that send a fixed OpenAI model name). Any other name is a
404 `model_not_found`, as OpenAI answers: vectors of a model other than the one asked for would
silently mix spaces in the caller's index."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel

from api.server.bodies import BoundedRoute
from api.server.deps import SearcherDep, SettingsDep
from search.settings import Settings

router = APIRouter(route_class=BoundedRoute)
_STARTED = int(time.time())  # a model's `created`: OpenAI gives one; the service has no better date


class Model(BaseModel):
    """One model, as OpenAI lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "semsearch"


class ModelList(BaseModel):
    """The models the service answers to: the serving model under its name and each alias."""

    object: Literal["list"] = "list"
    data: list[Model]


def model_names(model_name: str, settings: Settings) -> list[str]:
    """Every name `model_name` (the serving model) answers to, its own first."""
    last = model_name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    aliases = [a.strip() for a in (settings.model_aliases or "").split(",") if a.strip()]
    return list(dict.fromkeys([model_name, last, *aliases]))


def check_model(requested: str | None, model_name: str, settings: Settings) -> None:
    """Refuse (404 `model_not_found`) a request naming a model this service does not serve."""
    if requested is None:
        return
    names = model_names(model_name, settings)
    if requested not in names:
        message = (
            f"model {requested!r} is not served here: this service embeds with {names[0]!r}; send 'model' as one "
            f"of {', '.join(repr(n) for n in names[:6])} or leave it out (SEMSEARCH_MODEL_ALIASES adds names)"
        )
        raise HTTPException(404, {"message": message, "code": "model_not_found", "param": "model"})


@router.get("/v1/models", response_model=ModelList, summary="OpenAI-compatible model list")
async def list_models(searcher: SearcherDep, settings: SettingsDep) -> ModelList:
    """The serving model under each name it answers to."""
    names = model_names(searcher.serving.encoder.model_name, settings)
    return ModelList(data=[Model(id=name, created=_STARTED) for name in names])


@router.get("/v1/models/{model_id:path}", response_model=Model, summary="OpenAI-compatible model")
async def get_model(
    model_id: Annotated[str, Path(description="A name the serving model answers to.")],
    searcher: SearcherDep,
    settings: SettingsDep,
) -> Model:
    """The serving model, when `model_id` is a name it answers to; else 404 `model_not_found`."""
    check_model(model_id, searcher.serving.encoder.model_name, settings)
    return Model(id=model_id, created=_STARTED)
