"""`/api/v1/credits/`: credit budgets. Everyone reads their own standing (`GET /credits/` or
`GET /credits/{your id}/`); staff read anyone's and set (`PUT`) or remove (`DELETE`) it. As everywhere in
the API, another user's budget is a 404 to a non-staff user (indistinguishable from no such user), and a
non-staff user changing their own is refused (403). Values are checked by `services.credit_budget_set`, so
the admin and the API give the same message."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import selectors
from executions.services import credits as credit_services
from executions.usage import BudgetPeriod
from toolkit import clock
from toolkit.api import InstantField


@extend_schema_field(OpenApiTypes.NUMBER)
class AmountField(serializers.JSONField):
    """A number, checked by the domain (`usage.parse_usage`'s rule: non-negative, bounded)."""


class CreditStandingSerializer(serializers.Serializer):
    owner = serializers.IntegerField(help_text="The user's id.")
    username = serializers.CharField()
    credits = serializers.FloatField(
        allow_null=True, help_text="Credits allowed per period; null: no budget."
    )
    period = serializers.ChoiceField(
        choices=[("", "none"), *BudgetPeriod.choices],
        allow_null=True,
        help_text="When the allowance starts again (UTC); empty: never; null: no budget.",
    )
    used = serializers.FloatField(allow_null=True, help_text="Credits runs reported using since `since`.")
    left = serializers.FloatField(allow_null=True, help_text="Credits left (never below 0); null: unlimited.")
    exhausted = serializers.BooleanField(
        help_text="No credit left: due runs are skipped (credits_exhausted)."
    )
    since = InstantField(
        allow_null=True, help_text="Start of what is counted: the period's, or the last reset."
    )
    period_ends = InstantField(allow_null=True, help_text="When the allowance starts again.")
    note = serializers.CharField(allow_blank=True)


class CreditBudgetSerializer(serializers.Serializer):
    credits = AmountField(help_text="Credits per period, a non-negative number (0 stops every run).")
    period = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default=BudgetPeriod.MONTH,
        help_text="day, week or month (UTC calendar periods; default month), or empty for no period.",
    )
    note = serializers.CharField(required=False, allow_blank=True, default="", help_text="Why.")
    reset = serializers.BooleanField(
        required=False, default=False, help_text="Count usage afresh from now (credits used back to 0)."
    )


def standing_of(user: Any) -> dict[str, Any]:
    """One user's standing as the API shows it (one query)."""
    standing = selectors.credit_standing_of([user.pk], now=clock.now()).get(user.pk)
    answer: dict[str, Any] = {"owner": user.pk, "username": user.get_username()}
    if standing is None:
        return {**answer, "credits": None, "period": None, "used": None, "left": None, "exhausted": False,
                "since": None, "period_ends": None, "note": ""}  # fmt: skip
    return {
        **answer,
        "credits": float(standing.credits),
        "period": standing.period,
        "used": float(standing.used),
        "left": float(standing.left),
        "exhausted": standing.exhausted,
        "since": standing.since,
        "period_ends": standing.period_ends,
        "note": standing.note,
    }


class OwnCreditsView(APIView):
    @extend_schema(
        operation_id="credits_own",
        summary="Your credit budget",
        responses=CreditStandingSerializer,
        tags=["credits"],
    )
    def get(self, request: Request) -> Response:
        return Response(CreditStandingSerializer(standing_of(request.user)).data)


@extend_schema(
    parameters=[OpenApiParameter("user_id", int, OpenApiParameter.PATH, description="A user's id.")]
)
class UserCreditsView(APIView):
    def _user(self, request: Request, user_id: int | str) -> Any:
        """The user named, if the caller may see them: staff anyone, others only themselves (404 else)."""
        text = str(user_id)
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise NotFound("no such user")
        caller = cast(Any, request.user)
        if not caller.is_staff and caller.pk != int(text):
            raise NotFound("no such user")
        user = get_user_model().objects.filter(pk=int(text)).first()
        if user is None:
            raise NotFound("no such user")
        return user

    @staticmethod
    def _staff_only(request: Request) -> None:
        if not cast(Any, request.user).is_staff:
            raise PermissionDenied("only staff may change credit budgets")

    @extend_schema(
        operation_id="credits_user", summary="A user's credit budget", responses=CreditStandingSerializer,
        tags=["credits"],
    )  # fmt: skip
    def get(self, request: Request, user_id: str) -> Response:
        return Response(CreditStandingSerializer(standing_of(self._user(request, user_id))).data)

    @extend_schema(
        summary="Set a user's credit budget (staff)",
        request=CreditBudgetSerializer,
        responses=CreditStandingSerializer,
        tags=["credits"],
        examples=[
            OpenApiExample("Monthly", value={"credits": 12000, "period": "month"}, request_only=True),
            OpenApiExample(
                "Bad",
                value={"credits": ["must be a non-negative number"]},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def put(self, request: Request, user_id: str) -> Response:
        user = self._user(request, user_id)
        self._staff_only(request)
        body = CreditBudgetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        credit_services.credit_budget_set(owner=user, **body.validated_data)
        return Response(CreditStandingSerializer(standing_of(user)).data)

    @extend_schema(summary="Remove a user's credit budget (staff)", responses={204: None}, tags=["credits"])
    def delete(self, request: Request, user_id: str) -> Response:
        user = self._user(request, user_id)
        self._staff_only(request)
        credit_services.credit_budget_delete(owner=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
