"""The segment builder's form: condition rows in AND/OR groups, to and from the rule language.

The builder edits what a person can read at a glance: a top-level group (``all`` / ``any``)
of condition rows and of nested groups one level deep, each of condition rows. Anything
the rule language can say beyond that (deeper nesting, a negated group) is kept as a
read-only row carrying its JSON, so loading and saving a segment never loses a rule.

Which inputs a row shows is decided by the field's JSON schema from
``segments.describe_fields()`` (its ops, the type of its value, whether it takes ``days``,
``of`` or ``overdue_days``); money fields are typed in major units (yuan) and kept as
integer minor units. A posted form is laid out as::

    top_op, top_negate                      the top-level group
    group=<g>, <g>.op, <g>.negate           each nested group, in order
    row=<r>, <r>.group (<g> or empty), <r>.field, <r>.op, <r>.value (repeated),
    <r>.days, <r>.of, <r>.overdue_days, <r>.negate, <r>.raw

Problems found by ``segments.parse_rules`` name a path (``rules.children.2.value``); the
builder maps each path back to its row and part, so the message is shown beside it.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as default
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.datastructures import FormData

from patron.campaigns import segments
from patron.core.errors import FieldProblem
from patron.web.i18n import N_

#: Fields whose value is an amount of money (minor units in the rule, yuan in the form).
MONEY_FIELDS = frozenset({"spend", "wallet_balance", "clv_minor"})
#: Where the choices of a list-valued field come from (``bought`` depends on ``of``).
SOURCES = {"tier": "tiers", "home_store": "stores", "tags": "tags", "used_coupon": "templates"}
DAY_OPS = frozenset({"within_days", "not_within_days"})
DATE_OPS = frozenset({"before", "on_or_after"})

FIELD_LABELS = {
    "tier": N_("Tier"), "home_store": N_("Home store"), "tags": N_("Tags"),
    "joined": N_("Joined"), "birthday_month": N_("Birthday month"),
    "sms_consent": N_("SMS consent"), "email_consent": N_("E-mail consent"),
    "gender": N_("Gender"), "last_purchase": N_("Last purchase"),
    "purchase_count": N_("Number of purchases"), "spend": N_("Spend (net of refunds)"),
    "bought": N_("Bought"), "used_coupon": N_("Used a coupon"),
    "wallet_balance": N_("Stored value balance"), "points_balance": N_("Points balance"),
    "complaints": N_("Complaints"), "rfm_segment": N_("RFM segment"),
    "lifecycle_stage": N_("Lifecycle stage"), "loyalty_type": N_("Loyalty type"),
    "p_alive": N_("Probability still a customer"), "clv_minor": N_("Predicted lifetime value"),
    "next_purchase_on": N_("Next purchase due"),
}
KIND_LABELS = {"member": N_("About the member"), "behaviour": N_("What they did"),
               "score": N_("Analytics scores")}
OP_LABELS = {
    "<": "<", "<=": "≤", ">": ">", ">=": "≥", "=": "=",
    "any": N_("any of"), "all": N_("all of"), "open": N_("still open"),
    "before": N_("before"), "on_or_after": N_("on or after"),
    "within_days": N_("in the last N days"), "not_within_days": N_("not in the last N days"),
    "ever": N_("at some time"), "never": N_("never"),
}
#: Per field, where an op means something else than the generic label says.
FIELD_OP_LABELS = {("complaints", "any"): N_("any complaint"),
                   ("next_purchase_on", "within_days"): N_("in the next N days")}
VALUE_LABELS = {
    "champions": N_("Champions"), "loyal": N_("Loyal"),
    "potential_loyalist": N_("Potential loyalist"), "new": N_("New"),
    "promising": N_("Promising"), "needs_attention": N_("Needs attention"),
    "about_to_sleep": N_("About to sleep"), "at_risk": N_("At risk"),
    "cant_lose": N_("Can't lose them"), "hibernating": N_("Hibernating"), "lost": N_("Lost"),
    "growing": N_("Growing"), "mature": N_("Mature"), "declining": N_("Declining"),
    "lapsed": N_("Lapsed"), "trust": N_("Trust"), "inertia": N_("Inertia"),
    "latent": N_("Latent"), "none": N_("None"), "female": N_("Female"), "male": N_("Male"),
    "other": N_("Other"), "unknown": N_("Not given"), "product": N_("a product"),
    "category": N_("something in a category"), "current": N_("This month"),
    "next": N_("Next month"), "true": N_("Yes"), "false": N_("No"),
}
#: Friendlier sentences for the rule problems' codes (Pydantic's types and the parser's).
PROBLEM_MESSAGES = {
    "missing": N_("This field is required"),
    "too_short": N_("Choose at least one"),
    "too_long": N_("Too many entries"),
    "literal_error": N_("Choose one of the options"),
    "enum": N_("Choose one of the options"),
    "int_parsing": N_("Enter a whole number"),
    "int_type": N_("Enter a whole number"),
    "int_from_float": N_("Enter a whole number"),
    "float_parsing": N_("Enter a number"),
    "date_from_datetime_parsing": N_("Enter a date"),
    "date_parsing": N_("Enter a date"),
    "greater_than_equal": N_("This number is too small"),
    "less_than_equal": N_("This number is too large"),
    "uuid_parsing": N_("Choose one of the options"),
    "unknown_field": N_("Choose a field"),
    "store_restriction_required": N_("A manager's segment must be limited to their own "
                                     "stores: keep a Home store condition listing only "
                                     "your stores at the top level, with All of"),
}
CHOOSE_FIELD = N_("Choose a field")
ENTER_NUMBER = N_("Enter a whole number")
ENTER_AMOUNT = N_("Type an amount such as 42.50")
ENTER_DECIMAL = N_("Enter a number")
BAD_JSON = N_("This value is not valid")


# ---------------------------------------------------------------- fields


@dataclass(frozen=True)
class FieldSpec:
    """How the builder shows one field of the rule language (from its JSON schema)."""

    name: str
    kind: str
    description: str
    ops: tuple[str, ...]
    widget: str  # choices, source, months, bool, date_or_days, int, money, decimal, json, none
    choices: tuple[str, ...] = ()
    has_days: bool = False
    has_of: bool = False
    has_overdue: bool = False
    source: str | None = None
    value_optional: bool = False  # the value has a default (consent: yes; coupons: any)

    def source_for(self, of: str) -> str | None:
        if self.name == "bought":
            return "categories" if of == "category" else "products"
        return self.source

    def incomplete(self, row: Row) -> bool:
        """A row still being filled in: it needs a value and has none yet."""
        return (self.needs_value(row.current_op) and not self.value_optional
                and not row.values)

    def needs_value(self, op: str) -> bool:
        if self.widget == "none":
            return False
        return not (self.widget == "date_or_days" and op in ("ever", "never"))


def _widget(name: str, value: Mapping[str, Any] | None) -> tuple[str, tuple[str, ...]]:
    if value is None:
        return "none", ()
    if name in MONEY_FIELDS:
        return "money", ()
    kinds = value.get("anyOf", [value])
    types = {k.get("type") for k in kinds}
    if any(k.get("format") == "date" for k in kinds):
        return "date_or_days", ()
    if "array" in types and "string" in types:  # a list or a named choice: birthday months
        return "months", ()
    if types == {"boolean"}:
        return "bool", ()
    if types == {"integer"}:
        return "int", ()
    if types == {"number"}:
        return "decimal", ()
    if types == {"array"}:
        items = value.get("items", {})
        if "enum" in items:
            return "choices", tuple(items["enum"])
        return "source", ()
    return "json", ()


@functools.cache
def field_specs() -> dict[str, FieldSpec]:
    """Every field of the rule language, as the builder shows it."""
    specs: dict[str, FieldSpec] = {}
    for entry in segments.describe_fields():
        props: dict[str, Any] = entry["schema"].get("properties", {})
        op = props.get("op", {})
        ops = tuple(op["enum"]) if "enum" in op else ((op["const"],) if "const" in op else ())
        value = props.get("value")
        widget, choices = _widget(entry["field"], value)
        optional = value is not None and ("default" in value or (
            value.get("type") == "array" and not value.get("minItems")))
        specs[entry["field"]] = FieldSpec(
            name=entry["field"], kind=entry["kind"], description=entry["description"],
            ops=ops, widget=widget, choices=choices, has_days="days" in props,
            has_of="of" in props, has_overdue="overdue_days" in props,
            source=SOURCES.get(entry["field"]) if widget == "source" else None,
            value_optional=optional)
    return specs


def field_groups() -> list[tuple[str, list[FieldSpec]]]:
    """The fields by kind, for the field menu's option groups."""
    out: dict[str, list[FieldSpec]] = {}
    for spec in field_specs().values():
        out.setdefault(spec.kind, []).append(spec)
    return list(out.items())


# ---------------------------------------------------------------- rows and groups


def new_key(prefix: str) -> str:
    """A random key for a row or group, so the page needs no counter."""
    return f"{prefix}{secrets.token_hex(4)}"


@dataclass
class Row:
    """One condition as typed (strings), or a read-only subtree (``raw``)."""

    key: str
    group: str = ""
    field: str = ""
    op: str = ""
    values: list[str] = default(default_factory=list)
    days: str = ""
    of: str = ""
    overdue_days: str = ""
    negate: bool = False
    raw: str = ""
    errors: dict[str, str] = default(default_factory=dict)

    @property
    def spec(self) -> FieldSpec | None:
        return field_specs().get(self.field)

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""

    @property
    def current_op(self) -> str:
        """The op as chosen, or the field's first (what a new row starts with)."""
        spec = self.spec
        if spec is None or not spec.ops:
            return ""
        return self.op if self.op in spec.ops else spec.ops[0]

    @property
    def error_text(self) -> str:
        return " ".join(dict.fromkeys(self.errors.values()))

    def described(self) -> str:
        """A read-only row's rules, compactly (they are shown as they are stored)."""
        try:
            return json.dumps(json.loads(self.raw), ensure_ascii=False, separators=(", ", ": "))
        except ValueError:
            return self.raw


@dataclass
class Group:
    key: str
    op: str = "all"
    negate: bool = False
    rows: list[Row] = default(default_factory=list)


@dataclass
class Builder:
    """The whole builder: the top-level op, its rows, its nested groups, and problems no
    row owns."""

    top_op: str = "all"
    top_negate: bool = False
    rows: list[Row] = default(default_factory=list)
    groups: list[Group] = default(default_factory=list)
    general: list[str] = default(default_factory=list)

    def all_rows(self) -> list[Row]:
        return [*self.rows, *(r for g in self.groups for r in g.rows)]

    @property
    def ok(self) -> bool:
        return not self.general and not any(r.errors for r in self.all_rows())

    # -- from the posted form

    @classmethod
    def from_form(cls, data: FormData) -> Builder:
        def text(name: str) -> str:
            value = data.get(name)
            return value.strip() if isinstance(value, str) else ""

        builder = cls(top_op="any" if text("top_op") == "any" else "all",
                      top_negate=text("top_negate") == "on")
        groups: dict[str, Group] = {}
        for key in _keys(data, "group"):
            group = Group(key=key, op="any" if text(f"{key}.op") == "any" else "all",
                          negate=text(f"{key}.negate") == "on")
            groups[key] = group
            builder.groups.append(group)
        for key in _keys(data, "row"):
            row = row_from_form(data, key)
            if row.group in groups:
                groups[row.group].rows.append(row)
            else:
                row.group = ""
                builder.rows.append(row)
        return builder

    # -- from stored rules

    @classmethod
    def from_rules(cls, rules: Mapping[str, Any], *, digits: int) -> Builder:
        builder = cls()
        if "children" not in rules:
            builder.rows.append(row_from_condition(rules, digits=digits))
            return builder
        builder.top_op = "any" if rules.get("op") == "any" else "all"
        builder.top_negate = bool(rules.get("negate"))
        for child in rules.get("children", []):
            if "children" not in child:
                builder.rows.append(row_from_condition(child, digits=digits))
            elif not child.get("negate") and all("children" not in c for c in child["children"]):
                group = Group(key=new_key("g"), op="any" if child.get("op") == "any" else "all")
                for grandchild in child["children"]:
                    row = row_from_condition(grandchild, digits=digits)
                    row.group = group.key
                    group.rows.append(row)
                builder.groups.append(group)
            else:
                builder.rows.append(Row(key=new_key("r"), raw=json.dumps(child)))
        return builder

    # -- to the rule language

    def to_rules(self, *, digits: int, skip_incomplete: bool = False
                 ) -> tuple[dict[str, Any] | None, dict[str, Row]]:
        """The rule tree and, for each condition's path, its row; None when no condition
        is complete. Input errors of a row (a number that is not one) are recorded on it;
        the caller still parses the tree, so every row's problems show at once.

        ``skip_incomplete`` leaves out rows still being filled in (no field, or no value
        yet: the live count of a draft); saving reports them instead.
        """
        paths: dict[str, Row] = {}
        children: list[dict[str, Any]] = []

        def add(row: Row, path: str, into: list[dict[str, Any]]) -> None:
            if not row.raw and not row.field:
                if not skip_incomplete:
                    row.errors["field"] = CHOOSE_FIELD
                return
            if skip_incomplete and not row.raw and row.spec is not None \
                    and row.spec.incomplete(row):
                return
            node = condition_of(row, digits=digits)
            if node is not None:
                paths[f"{path}.{len(into)}"] = row
                into.append(node)

        for row in self.rows:
            add(row, "rules.children", children)
        for group in self.groups:
            nested: list[dict[str, Any]] = []
            path = f"rules.children.{len(children)}"
            for row in group.rows:
                add(row, f"{path}.children", nested)
            if nested:
                node: dict[str, Any] = {"op": group.op, "children": nested}
                if group.negate:
                    node["negate"] = True
                children.append(node)
        if not children:
            return None, paths
        rules: dict[str, Any] = {"op": self.top_op, "children": children}
        if self.top_negate:
            rules["negate"] = True
        return rules, paths

    def place_problems(self, problems: Sequence[FieldProblem], paths: Mapping[str, Row],
                       message: Any) -> None:
        """Show each problem beside the row (and part) its path names; ``message(problem)``
        gives the text to show."""
        for problem in problems:
            row, part = _owner(problem.field, paths)
            text = message(problem)
            if row is None:
                if text not in self.general:
                    self.general.append(text)
            else:
                row.errors.setdefault(part, text)


def _keys(data: FormData, name: str) -> list[str]:
    seen: list[str] = []
    for value in data.getlist(name):
        if isinstance(value, str) and value and value not in seen and len(value) <= 40 \
                and all(c.isalnum() or c in "-_" for c in value):
            seen.append(value)
    return seen


def _owner(path: str, paths: Mapping[str, Row]) -> tuple[Row | None, str]:
    """The row whose path is the longest prefix of ``path``, and the part after it."""
    best = ""
    for candidate in paths:
        if (path == candidate or path.startswith(candidate + ".")) and len(candidate) > len(best):
            best = candidate
    if not best:
        return None, ""
    rest = path[len(best):].lstrip(".")
    return paths[best], rest.split(".", 1)[0] if rest else ""


def row_from_form(data: FormData, key: str) -> Row:
    def text(name: str) -> str:
        value = data.get(f"{key}.{name}")
        return value.strip() if isinstance(value, str) else ""

    values = [v.strip() for v in data.getlist(f"{key}.value") if isinstance(v, str) and v.strip()]
    return Row(key=key, group=text("group"), field=text("field"), op=text("op"), values=values,
               days=text("days"), of=text("of"), overdue_days=text("overdue_days"),
               negate=text("negate") == "on", raw=text("raw"))


def _yuan(minor: Any, digits: int) -> str:
    if isinstance(minor, int) and not isinstance(minor, bool):
        return f"{Decimal(minor).scaleb(-digits):f}"
    return str(minor)


def row_from_condition(node: Mapping[str, Any], *, digits: int) -> Row:
    """A stored condition as a row; one the builder cannot show becomes read-only."""
    name = node.get("field")
    spec = field_specs().get(name) if isinstance(name, str) else None
    if spec is None or spec.widget == "json":
        return Row(key=new_key("r"), raw=json.dumps(dict(node)))
    value = node.get("value")
    if value is None:
        values: list[str] = []
    elif isinstance(value, bool):
        values = ["true" if value else "false"]
    elif isinstance(value, list):
        values = [str(v) for v in value]
    elif spec.widget == "money":
        values = [_yuan(value, digits)]
    else:
        values = [str(value)]
    if spec.widget == "bool" and not values:
        values = ["true"]
    return Row(key=new_key("r"), field=spec.name, op=str(node.get("op", "")), values=values,
               days=str(node.get("days") or ""), of=str(node.get("of") or ""),
               overdue_days=str(node.get("overdue_days") or ""),
               negate=bool(node.get("negate")))


def _int(row: Row, part: str, raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        row.errors[part] = ENTER_NUMBER
        return None


def money_minor(raw: str, digits: int) -> int | None:
    """Major units as typed ("42.5", "¥1,200") as exact minor units; None if not money."""
    cleaned = raw.replace(",", "").replace("¥", "").replace("￥", "").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    scaled = value.scaleb(digits)
    if not value.is_finite() or scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def condition_of(row: Row, *, digits: int) -> dict[str, Any] | None:
    """The row as a condition of the rule language (input errors go on the row)."""
    if row.raw:
        try:
            loaded = json.loads(row.raw)
        except ValueError:
            row.errors[""] = BAD_JSON
            return None
        return loaded if isinstance(loaded, dict) else {"raw": loaded}
    spec = row.spec
    if spec is None:
        return {"field": row.field}  # the parser names the unknown field
    node: dict[str, Any] = {"field": spec.name}
    op = row.current_op
    if op:
        node["op"] = op
    if spec.has_of:
        node["of"] = row.of or "product"
    if spec.needs_value(op):
        value = _value(row, spec, op, digits)
        if value is not None:
            node["value"] = value
    if spec.has_days and row.days:
        node["days"] = _int(row, "days", row.days)
    if spec.has_overdue and row.overdue_days:
        node["overdue_days"] = _int(row, "overdue_days", row.overdue_days)
    if row.negate:
        node["negate"] = True
    return node


def _value(row: Row, spec: FieldSpec, op: str, digits: int) -> Any:
    """The typed value in the rule language's type; None leaves it out (the parser then
    says what is missing)."""
    widget, raw = spec.widget, row.value
    if widget in ("choices", "source"):
        return list(row.values)
    if widget == "months":
        named = [v for v in row.values if v in ("current", "next")]
        if named:
            return named[0]
        months = []
        for v in row.values:
            number = _int(row, "value", v)
            if number is not None:
                months.append(number)
        return months
    if widget == "bool":
        return raw != "false"
    if not raw:
        return None
    if widget == "int" or (widget == "date_or_days" and op in DAY_OPS):
        return _int(row, "value", raw)
    if widget == "date_or_days":
        return raw  # a date as typed: the parser checks it
    if widget == "money":
        minor = money_minor(raw, digits)
        if minor is None:
            row.errors["value"] = ENTER_AMOUNT
        return minor
    if widget == "decimal":
        try:
            return float(raw)
        except ValueError:
            row.errors["value"] = ENTER_DECIMAL
            return None
    try:
        return json.loads(raw)
    except ValueError:
        row.errors["value"] = BAD_JSON
        return None
