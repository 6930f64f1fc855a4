"""Label and field selectors, parsed the way kube-apiserver parses list/watch query strings.

The label selector parser is a port of ``k8s.io/apimachinery/pkg/labels`` (lexer, grammar, key and
value validation and error wording), so clients see the same acceptance and rejection behaviour as
against a real cluster. The field selector parser is a port of ``k8s.io/apimachinery/pkg/fields``;
which field paths a resource supports is the server's business, not this module's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector could not be parsed; the message is meant for a 400 BadRequest Status."""


class Operator(enum.StrEnum):
    """Requirement operators, spelled as ``k8s.io/apimachinery/pkg/selection`` spells them."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    GREATER_THAN = "gt"
    LESS_THAN = "lt"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_INT_RE = re.compile(r"[+-]?[0-9]+")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _qualified_name_errors(key: str) -> list[str]:
    """Mirror ``validation.IsQualifiedName``: an optional DNS-subdomain prefix, '/', and a name."""
    errors: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errors.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                errors.append(
                    "prefix part "
                    + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
                )
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errors.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def _label_value_errors(value: str) -> list[str]:
    errors: list[str] = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _parse_int64(text: str) -> int | None:
    """Mirror ``strconv.ParseInt(s, 10, 64)``, which is stricter than ``int()``."""
    if not _INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _key_error(key: str) -> str | None:
    errors = _qualified_name_errors(key)
    return f'<nil>: Invalid value: "{key}": {"; ".join(errors)}' if errors else None


@dataclass(frozen=True)
class Requirement:
    """One ANDed term of a label selector; build it with :meth:`create` so it is validated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def create(cls, key: str, operator: Operator, values: list[str]) -> Requirement:
        """Validate like ``labels.NewRequirement`` so API objects and query strings agree."""
        errors: list[str] = []
        key_errors = _qualified_name_errors(key)
        if key_errors:
            errors.append(f'key: Invalid value: "{key}": {"; ".join(key_errors)}')
        shown = "[]string{" + ", ".join(f'"{value}"' for value in values) + "}"
        if operator in (Operator.IN, Operator.NOT_IN):
            if not values:
                errors.append(
                    f"values: Invalid value: {shown}: for 'in', 'notin' operators, values set can't be empty"
                )
        elif operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
            if len(values) != 1:
                errors.append(
                    f"values: Invalid value: {shown}: exact-match compatibility requires one single value"
                )
        elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if values:
                errors.append(
                    f"values: Invalid value: {shown}: values set must be empty for exists and does not exist"
                )
        else:
            if len(values) != 1:
                errors.append(
                    f"values: Invalid value: {shown}: for 'Gt', 'Lt' operators, exactly one value is required"
                )
            errors.extend(
                f'values[{index}]: Invalid value: "{value}": '
                "for 'Gt', 'Lt' operators, the value must be an integer"
                for index, value in enumerate(values)
                if _parse_int64(value) is None
            )
        for index, value in enumerate(values):
            value_errors = _label_value_errors(value)
            if value_errors:
                errors.append(f'values[{index}][{key}]: Invalid value: "{value}": {"; ".join(value_errors)}')
        if len(errors) == 1:
            raise SelectorError(errors[0])
        if errors:
            raise SelectorError("[" + ", ".join(errors) + "]")
        return cls(key, operator, tuple(values))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Negative operators match objects lacking the key, as in Kubernetes."""
        present = self.key in labels
        if self.operator in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if self.operator in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return present
        if self.operator is Operator.DOES_NOT_EXIST:
            return not present
        if not present:
            return False
        actual = _parse_int64(labels[self.key])
        if actual is None:
            return False
        bound = int(self.values[0])
        return actual > bound if self.operator is Operator.GREATER_THAN else actual < bound


class _Token(enum.Enum):
    END = enum.auto()
    CLOSE_PAREN = enum.auto()
    COMMA = enum.auto()
    NOT = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER_THAN = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS_THAN = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAREN = enum.auto()


_LITERAL_TOKENS: dict[str, _Token] = {
    ")": _Token.CLOSE_PAREN,
    ",": _Token.COMMA,
    "!": _Token.NOT,
    "==": _Token.DOUBLE_EQUALS,
    "=": _Token.EQUALS,
    ">": _Token.GREATER_THAN,
    "in": _Token.IN,
    "<": _Token.LESS_THAN,
    "!=": _Token.NOT_EQUALS,
    "notin": _Token.NOT_IN,
    "(": _Token.OPEN_PAREN,
}
_OPERATOR_TOKENS: dict[_Token, Operator] = {
    _Token.IN: Operator.IN,
    _Token.EQUALS: Operator.EQUALS,
    _Token.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
    _Token.GREATER_THAN: Operator.GREATER_THAN,
    _Token.LESS_THAN: Operator.LESS_THAN,
    _Token.NOT_IN: Operator.NOT_IN,
    _Token.NOT_EQUALS: Operator.NOT_EQUALS,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> Iterator[tuple[_Token, str]]:
    """Tokenize like the Go lexer: operators are the longest known run of special symbols."""
    pos = 0
    while True:
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        if pos == len(text):
            yield _Token.END, ""
            return
        if text[pos] in _SPECIAL:
            # Every single special symbol is a token; the only longer ones are two characters.
            literal = text[pos : pos + 2] if text[pos : pos + 2] in _LITERAL_TOKENS else text[pos]
            yield _LITERAL_TOKENS[literal], literal
            pos += len(literal)
        else:
            end = pos
            while end < len(text) and text[end] not in _SPECIAL and text[end] not in _WHITESPACE:
                end += 1
            word = text[pos:end]
            yield _LITERAL_TOKENS.get(word, _Token.IDENTIFIER), word
            pos = end


class _Parser:
    """Recursive-descent parser mirroring ``labels.Parser``, including its error messages."""

    def __init__(self, text: str) -> None:
        self._items = list(_lex(text))
        self._position = 0

    def _lookahead(self, values_context: bool = True) -> tuple[_Token, str]:
        return self._as_context(self._items[self._position], values_context)

    def _consume(self, values_context: bool = True) -> tuple[_Token, str]:
        item = self._items[self._position]
        self._position += 1
        return self._as_context(item, values_context)

    @staticmethod
    def _as_context(item: tuple[_Token, str], values_context: bool) -> tuple[_Token, str]:
        # In value position `in` and `notin` are ordinary words, so `x in (in)` is valid.
        token, literal = item
        if values_context and token in (_Token.IN, _Token.NOT_IN):
            return _Token.IDENTIFIER, literal
        return token, literal

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._lookahead()
            if token is _Token.END:
                return requirements
            if token not in (_Token.IDENTIFIER, _Token.NOT):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._parse_requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            token, literal = self._consume()
            if token is _Token.END:
                return requirements
            if token is not _Token.COMMA:
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            next_token, next_literal = self._lookahead()
            if next_token not in (_Token.IDENTIFIER, _Token.NOT):
                raise SelectorError(f"found '{next_literal}', expected: identifier after ','")

    def _parse_requirement(self) -> Requirement:
        negated = False
        token, literal = self._consume()
        if token is _Token.NOT:
            negated = True
            token, literal = self._consume()
        if token is not _Token.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        key = literal
        key_error = _key_error(key)
        if key_error:
            raise SelectorError(key_error)
        if negated:
            return Requirement.create(key, Operator.DOES_NOT_EXIST, [])
        if self._lookahead()[0] in (_Token.END, _Token.COMMA):
            return Requirement.create(key, Operator.EXISTS, [])
        token, literal = self._consume(values_context=False)
        operator = _OPERATOR_TOKENS.get(token)
        if operator is None:
            raise SelectorError(f"found '{literal}', expected: {_BINARY_OPERATORS}")
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self._parse_values()
        else:
            values = self._parse_exact_value()
        return Requirement.create(key, operator, sorted(values))

    def _parse_values(self) -> set[str]:
        token, literal = self._consume()
        if token is not _Token.OPEN_PAREN:
            raise SelectorError(f"found '{literal}' expected: '('")
        token, literal = self._lookahead()
        if token is _Token.CLOSE_PAREN:
            self._consume()
            return {""}
        if token not in (_Token.IDENTIFIER, _Token.COMMA):
            raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values = self._parse_identifiers_list()
        if self._consume()[0] is not _Token.CLOSE_PAREN:
            raise SelectorError(f"found '{literal}', expected: ')'")
        return values

    def _parse_identifiers_list(self) -> set[str]:
        """Parse ``a,b,c``; empty members such as ``(,a)`` or ``(a,,b)`` stand for the empty value."""
        values: set[str] = set()
        while True:
            token, literal = self._consume()
            if token is _Token.IDENTIFIER:
                values.add(literal)
                next_token, next_literal = self._lookahead()
                if next_token is _Token.CLOSE_PAREN:
                    return values
                if next_token is not _Token.COMMA:
                    raise SelectorError(f"found '{next_literal}', expected: ',' or ')'")
            elif token is _Token.COMMA:
                if not values:
                    values.add("")
                next_token = self._lookahead()[0]
                if next_token is _Token.CLOSE_PAREN:
                    values.add("")
                    return values
                if next_token is _Token.COMMA:
                    self._consume()
                    values.add("")
            else:
                raise SelectorError(f"found '{literal}', expected: ',', or identifier")

    def _parse_exact_value(self) -> set[str]:
        if self._lookahead()[0] in (_Token.END, _Token.COMMA):
            return {""}
        token, literal = self._consume()
        if token is not _Token.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        return {literal}


_API_OPERATORS: dict[str, Operator] = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector: every requirement must match (logical AND)."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse a ``labelSelector=`` query value; the empty string selects everything."""
        requirements = _Parser(text).parse()
        return cls(tuple(sorted(requirements, key=lambda requirement: requirement.key)))

    @classmethod
    def from_api(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """Convert a ``metav1.LabelSelector`` object such as a Deployment's ``spec.selector``.

        Unlike ``metav1.LabelSelectorAsSelector`` a missing selector matches everything too, because
        callers here use it for optional selectors where absence means "no restriction".
        """
        if not selector:
            return cls()
        if not isinstance(selector, Mapping):
            raise SelectorError(f"label selector must be an object, got {type(selector).__name__}")
        match_labels = selector.get("matchLabels") or {}
        match_expressions = selector.get("matchExpressions") or []
        if not isinstance(match_labels, Mapping):
            raise SelectorError("matchLabels must be an object")
        if not isinstance(match_expressions, list):
            raise SelectorError("matchExpressions must be a list")
        requirements: list[Requirement] = []
        for key, value in match_labels.items():
            if not isinstance(value, str):
                raise SelectorError(f"matchLabels value for {key!r} must be a string")
            requirements.append(Requirement.create(key, Operator.EQUALS, [value]))
        for expression in match_expressions:
            if not isinstance(expression, Mapping):
                raise SelectorError("matchExpressions entries must be objects")
            operator = _API_OPERATORS.get(expression.get("operator", ""))
            if operator is None:
                raise SelectorError(f'"{expression.get("operator")}" is not a valid label selector operator')
            key = expression.get("key", "")
            values = expression.get("values") or []
            if not isinstance(key, str):
                raise SelectorError("matchExpressions key must be a string")
            if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
                raise SelectorError("matchExpressions values must be a list of strings")
            requirements.append(Requirement.create(key, operator, values))
        return cls(tuple(sorted(requirements, key=lambda requirement: requirement.key)))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Check an object's ``metadata.labels``; ``None`` means the object has no labels."""
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)

    def is_empty(self) -> bool:
        """True when the selector places no restriction, so callers can skip filtering."""
        return not self.requirements


@dataclass(frozen=True)
class FieldRequirement:
    """One ANDed term of a field selector; exposed so the server can reject unsupported fields."""

    field: str
    operator: Operator
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = _field_value(obj, self.field)
        if self.operator is Operator.NOT_EQUALS:
            return actual != self.value
        return actual == self.value


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector: every requirement must match (logical AND)."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Compare each field's string form; missing fields compare as the empty string."""
        return all(requirement.matches(obj) for requirement in self.requirements)

    def is_empty(self) -> bool:
        """True when the selector places no restriction, so callers can skip filtering."""
        return not self.requirements


def _field_value(obj: Mapping[str, Any], path: str) -> str | None:
    """Render a field the way the apiserver's field sets do; ``None`` for maps and lists."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, str | int | float):
        return str(current)
    return None


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped, keeping escapes for unescaping later."""
    terms: list[str] = []
    start = 0
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, Operator, str] | None:
    # `!=` and `==` are tried before `=` at each position so `a==b` does not yield the value `=b`.
    for index in range(len(term)):
        for spelling, operator in (("!=", Operator.NOT_EQUALS), ("==", Operator.DOUBLE_EQUALS)):
            if term.startswith(spelling, index):
                return term[:index], operator, term[index + 2 :]
        if term[index] == "=":
            return term[:index], Operator.EQUALS, term[index + 1 :]
    return None


def _unescape_value(value: str) -> str:
    """Undo ``fields.EscapeValue``: only ``\\\\``, ``\\,`` and ``\\=`` are valid escapes."""
    result: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            result.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {char}")
        else:
            result.append(char)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(result)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse a ``fieldSelector=`` query value like ``fields.ParseSelector``.

    No whitespace is trimmed, exactly as upstream: ``a = b`` names the field ``"a "``.
    """
    requirements: list[FieldRequirement] = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, operator, value = split
        requirements.append(FieldRequirement(field, operator, _unescape_value(value)))
    return FieldSelector(tuple(requirements))


def label_selector_string(selector: Mapping[str, Any] | None) -> str:
    """A `metav1.LabelSelector` as its query string (`app=web,tier in (a,b)`); empty when it selects all."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for requirement in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin"}.get(requirement.get("operator", ""))
        key = requirement.get("key", "")
        if op:
            parts.append(f"{key} {op} ({','.join(sorted(requirement.get('values') or []))})")
        else:
            parts.append(key if requirement.get("operator") == "Exists" else f"!{key}")
    return ",".join(parts)
