"""The estimator options a service user may set on a fit (``ModelCreate.options``).

A small, bounded set: every number is strictly typed (``true`` is not 1, ``"5"`` is not 5)
and has an upper bound, so one request cannot pin or exhaust a worker; unknown keys are
refused. Options left out take the engine's defaults. What depends on the deployment
(``backend`` vs GPU_AVAILABLE, ``k_range`` vs MAX_TOPICS, ``test_hook`` vs
ENABLE_TEST_HOOKS) is checked at submit by :func:`check_fit_options`, which raises a
422 naming the field and what is allowed.

Thread count, block sizes and cache sizes are left to the worker.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
from pydantic.json_schema import SkipJsonSchema

from app.core.api_errors import ApiError
from app.core.settings import Settings

MAX_RESTARTS = 50
MAX_ITER = 1000
MAX_EXTRA_COMPONENTS = 50
MAX_KRYLOV_BLOCKS = 10

class FitOptions(BaseModel):
    """Engine options of one fit; every field is optional (``null`` = the engine default)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "numpy", "cupy"] | None = Field(default=None, description=(
        "Array backend of the fit; 'cupy' only where the deployment has GPU workers (GPU_AVAILABLE). "
        "Default: the worker's FIT_BACKEND."))
    dtype: Literal["float32", "float64"] | None = Field(
        default=None, description="Precision of the passes over documents (default float64).")
    n_restarts: Annotated[int, Field(strict=True, ge=1, le=MAX_RESTARTS)] | None = Field(
        default=None, description=f"Power-method restarts per component, 1..{MAX_RESTARTS} (default 10).")
    n_iter: Annotated[int, Field(strict=True, ge=1, le=MAX_ITER)] | None = Field(
        default=None, description=f"Power-method iterations per restart, 1..{MAX_ITER} (default 30).")
    n_extra_components: Annotated[int, Field(strict=True, ge=0, le=MAX_EXTRA_COMPONENTS)] | None = Field(
        default=None, description=f"Fit this many more components and keep the k largest, 0..{MAX_EXTRA_COMPONENTS}.")
    n_krylov_blocks: Annotated[int, Field(strict=True, ge=1, le=MAX_KRYLOV_BLOCKS)] | None = Field(
        default=None, description=f"M2 applications of the Krylov range finder, 1..{MAX_KRYLOV_BLOCKS} (default 3).")
    refine: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, description="Variational EM sweeps from the spectral start (default true).")
    k_range: tuple[Annotated[int, Field(strict=True, ge=2)], Annotated[int, Field(strict=True, ge=2)]] | None = Field(
        default=None, description="[low, high] topic counts tried when n_topics is 'auto' (high <= MAX_TOPICS).")
    word_scale_power: Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)] | None = Field(
        default=None, description="Exponent of the word scaling in whitening, 0..1 (default 0.2).")
    tol: Annotated[float, Field(strict=True, ge=1e-15, le=1e-2, allow_inf_nan=False)] | None = Field(
        default=None, description="Power-method convergence tolerance, 1e-15..1e-2 (default 1e-10).")
    test_hook: SkipJsonSchema[dict[str, Any] | None] = None  # ENABLE_TEST_HOOKS deployments only

    @model_validator(mode="after")
    def _ordered_range(self) -> "FitOptions":
        if self.k_range is not None and self.k_range[0] > self.k_range[1]:
            raise ValueError(f"k_range={list(self.k_range)}: low must be <= high")
        return self

    @model_serializer(mode="wrap")
    def _set_only(self, handler) -> dict[str, Any]:
        """Only what the caller set: the engine keeps its defaults for the rest."""
        return {key: value for key, value in handler(self).items() if value is not None}

    def estimator_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments of the estimator (without ``test_hook``)."""
        values = self.model_dump()
        values.pop("test_hook", None)
        if "k_range" in values:
            values["k_range"] = tuple(values["k_range"])
        return values


def check_fit_options(settings: Settings, options: FitOptions, n_topics: int | str) -> None:
    """422 for options this deployment cannot honour (GPU backend, k_range, test hooks)."""
    if options.backend == "cupy" and not settings.gpu_available:
        raise ApiError(422, "option_not_allowed", "options.backend='cupy' is not available: this deployment has "
                                                  "no GPU workers (GPU_AVAILABLE=false); allowed: auto, numpy")
    if options.k_range is not None:
        if n_topics != "auto":
            raise ApiError(422, "option_not_allowed", "options.k_range applies only with n_topics='auto'")
        low, high = options.k_range
        if not settings.min_topics <= low <= high <= settings.max_topics:
            raise ApiError(422, "option_out_of_range",
                           f"options.k_range={[low, high]} is out of range: allowed "
                           f"{settings.min_topics}..{settings.max_topics} (MIN_TOPICS, MAX_TOPICS)")
    if options.test_hook is not None and not settings.enable_test_hooks:
        raise ApiError(422, "option_not_allowed", "options.test_hook is not an option (test deployments only)")
