"""Settings from environment variables, with defaults that work for the local stack."""

from functools import cached_property

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.spec import Limits


class Settings(BaseSettings):
    """Every variable the code reads; the README's configuration table lists the same names."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Which weights workers and the CLI load: imagenet, random:<seed>, or a file path.
    weights: str = Field("imagenet", validation_alias="FILTERVIZ_WEIGHTS")
    imagenet_weights: str | None = Field(None, validation_alias="FILTERVIZ_IMAGENET_WEIGHTS")
    # 0 picks the largest batch that fits batch_memory_mb (default 1 GiB on CPU, 8 GiB on GPU).
    batch_size: int = Field(0, ge=0, validation_alias="FILTERVIZ_BATCH_SIZE")
    batch_memory_mb: int = Field(0, ge=0, validation_alias="FILTERVIZ_BATCH_MEMORY_MB")

    max_filters: int = Field(512, ge=1, validation_alias="FILTERVIZ_MAX_FILTERS")
    max_image_size: int = Field(512, ge=16, validation_alias="FILTERVIZ_MAX_IMAGE_SIZE")
    max_steps: int = Field(200, ge=1, validation_alias="FILTERVIZ_MAX_STEPS")
    max_grid_n: int = Field(16, ge=1, validation_alias="FILTERVIZ_MAX_GRID_N")

    @cached_property
    def limits(self) -> Limits:
        """The request limits a job spec is validated against."""
        return Limits(
            max_filters=self.max_filters,
            max_image_size=self.max_image_size,
            max_steps=self.max_steps,
            max_grid_n=self.max_grid_n,
        )
