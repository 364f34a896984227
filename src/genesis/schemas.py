"""Request and response bodies. Response models list their fields explicitly, so a
password hash can never leak into an answer by accident."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

MIN_PASSWORD = 8

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Industry = Annotated[str, StringConstraints(strip_whitespace=True, max_length=80)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Question = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]


class UserCreate(BaseModel):
    email: EmailStr
    password: str = Field(min_length=MIN_PASSWORD, max_length=256)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: EmailStr
    created_at: datetime


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class BusinessIn(BaseModel):
    name: Name
    industry: Industry = ""
    description: Description = ""


class BusinessUpdate(BaseModel):
    name: Name | None = None
    industry: Industry | None = None
    description: Description | None = None


class BusinessOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    industry: str
    description: str
    created_at: datetime
    updated_at: datetime


class CoachingQuestion(BaseModel):
    business_id: int
    question: Question


class CoachingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    business_id: int
    question: str
    answer: str
    cached: bool
    created_at: datetime
