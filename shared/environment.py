"""How environment variables become typed settings: the base every settings class builds on.

Every variable can also come from a file: `NAME_FILE=/path` reads NAME from that file (the
convention of the official database images), which is how compose hands services the secrets it
generates (provision/secrets.py). A variable set directly wins over its file. An empty variable
counts as unset (compose passes `${VAR:-}` through as "").

Only pydantic-settings is imported here: gunicorn's config file and the backend choice read their
settings (shared/setting_groups.py) before anything else is loaded.
"""

import os
from pathlib import Path
from typing import Any, Self

from pydantic import AliasChoices, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigurationError(ValueError):
    """A variable's value is refused; the message names the variable and says why."""


def variables_of(field: FieldInfo, field_name: str) -> tuple[str, ...]:
    """The variables a field reads, the one that wins first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    return (alias if isinstance(alias, str) else field_name,)


def variable_names(settings_cls: type[BaseSettings]) -> set[str]:
    """Every variable a settings class reads (each also as NAME_FILE)."""
    return {name for field_name, field in settings_cls.model_fields.items() for name in variables_of(field, field_name)}


class FileSettingsSource(PydanticBaseSettingsSource):
    """Values from the files that `NAME_FILE` variables name, one value a file (a final newline dropped)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        alias = variables_of(field, field_name)[0]
        path = os.environ.get(f"{alias}_FILE")
        if not path:
            return None, alias, False
        try:
            return Path(path).read_text().removesuffix("\n"), alias, False
        except OSError as error:
            raise ConfigurationError(f"{alias}_FILE={path} can't be read: {error.strerror}") from None

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, alias, _ = self.get_field_value(field, name)
            if value is not None:
                values[alias] = value
        return values


class EnvironmentSettings(BaseSettings):
    """Settings read from environment variables (each field's validation_alias), then from NAME_FILE files."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments, then variables, then the files `NAME_FILE` variables name.
        return init_settings, env_settings, FileSettingsSource(settings_cls)

    @classmethod
    def from_environment(cls) -> Self:
        """The settings the environment gives, or a ConfigurationError naming each variable it refuses
        (a line a person can act on, where pydantic's error is a traceback and a page)."""
        try:
            return cls()
        except ValidationError as error:
            raise ConfigurationError(cls._describe(error)) from None

    @classmethod
    def _describe(cls, error: ValidationError) -> str:
        # pydantic names a field of several variables by its first one: say all of them. The values
        # are left out, as some are secrets.
        names = {
            variables_of(field, name)[0]: " or ".join(variables_of(field, name))
            for name, field in cls.model_fields.items()
        }
        problems = []
        for problem in error.errors(include_url=False):
            where = str(problem["loc"][0]) if problem["loc"] else cls.__name__
            problems.append(f"{names.get(where, where)}: {problem['msg']}")
        return "; ".join(problems)
