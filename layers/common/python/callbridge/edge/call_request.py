"""The JSON body of POST /v1/{account}/calls (edge/clicktocall.py), validated with pydantic: the
verdict, with what is wrong, on a body edge/clicktocall.py's plain check cannot vouch for. In a
module of its own so that only such a body loads pydantic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CallRequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=256, description="PBX user")
    extension: str | None = Field(default=None, min_length=1, max_length=32, description="or their extension")
    phone: str = Field(min_length=1, max_length=64, description="Number to call, any format")
    clid: str | None = Field(default=None, max_length=64, description="Caller id to present (Cloud PBX)")

    @model_validator(mode="after")
    def _who(self) -> CallRequestModel:
        if not self.user and not self.extension:
            raise ValueError("give user or extension")
        return self
