"""QIDO-RS query parameters -> one ORM query, and its rows -> DICOM JSON (PS3.18 8.3.4, PS3.4 C.2.2.2).

Every attribute QIDO can match or return is declared once in `ATTRIBUTES`, with the index column
that holds it and how it is matched, so one table drives parsing, the SELECT list and the JSON.
Matching and returning read only the index (archive.models), never the stored objects; only
instance-level `includefield` of attributes the index lacks reads the stored DICOM JSON
(`Instance.metadata`), and then only the requested keys of it.
"""

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from django.db.models import F, Func, JSONField, Lookup, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast
from django.http import QueryDict

from medai.archive.models import Study
from medai.dicomweb.dicomjson import absolute_bulkdata, attribute, keyword_of, tag_hex

CHARACTER_SET = "ISO_IR 192"  # the index holds Unicode and DICOM JSON is UTF-8
RETRIEVE_URL_TAG = tag_hex("RetrieveURL")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_DATE = re.compile(r"[0-9]{8}")
_TIME = re.compile(r"([01][0-9]|2[0-3])(?:([0-5][0-9])(?:([0-5][0-9])(?:\.([0-9]{1,6}))?)?)?")
_MAX_OFFSET = 2**31 - 1
_CONTROL_PARAMETERS = {"limit", "offset", "includefield", "fuzzymatching", "accept"}


class QidoError(ValueError):
    """A query the origin server cannot answer; the message becomes the 400's readable reason."""


class Level(IntEnum):
    """Query/retrieve levels; a level's queries may also match and return the levels above it."""

    STUDY = 0
    SERIES = 1
    INSTANCE = 2


class _Like(Lookup):
    """`LIKE` with a pattern already translated and escaped by `_like_pattern` (Django has no raw LIKE)."""

    lookup_name = "qido_like"
    operator = "LIKE"

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} {self.operator} {rhs}", [*lhs_params, *rhs_params]


class _ILike(_Like):
    lookup_name = "qido_ilike"
    operator = "ILIKE"


class _MetadataElement(Func):
    """`metadata -> '00185101'`: Django's KeyTransform reads an all-digit key as an array index."""

    arg_joiner = " -> "
    template = "(%(expressions)s)"
    output_field = JSONField()

    def __init__(self, tag: str) -> None:
        super().__init__(F("metadata"), Cast(Value(tag), TextField()))


# --- Matching (PS3.4 C.2.2.2) --------------------------------------------------------------------


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _like_pattern(value: str) -> str:
    """DICOM wildcards to a LIKE pattern: `*` -> `%`, `?` -> `_`; LIKE's own metacharacters escaped."""
    special = {"*": "%", "?": "_", "%": "\\%", "_": "\\_", "\\": "\\\\"}
    return "".join(special.get(char, char) for char in value)


def _match_text(attr: "Attr", path: str, value: str) -> Q:
    """Single value matching, case-sensitive; wildcards make it a LIKE (a prefix LIKE can use an index)."""
    if _has_wildcard(value):
        return Q(_Like(F(path), _like_pattern(value)))
    return Q(**{path: value})


def _match_person_name(attr: "Attr", path: str, value: str) -> Q:
    """PN matching is case-insensitive: PS3.4 C.2.2.2.1 allows it, and people type names in any case."""
    return Q(_ILike(F(path), _like_pattern(value)))


def _split_list(values: Iterable[str]) -> list[str]:
    """Value lists come comma- or backslash-separated, and as repeated parameters (PS3.18 8.3.4.1)."""
    return [item.strip() for value in values for item in re.split(r"[,\\]", value) if item.strip()]


def _match_uids(attr: "Attr", path: str, values: list[str]) -> Q:
    uids = _split_list(values)
    for uid in uids:
        if len(uid) > 64 or not _UID.fullmatch(uid):
            raise QidoError(f"{attr.keyword}: {uid!r} is not a UID.")
    return Q(**{f"{path}__in": uids}) if len(uids) > 1 else Q(**{path: uids[0]})


def _match_any_of(attr: "Attr", path: str, values: list[str]) -> Q:
    """Modalities in Study matches a study holding any of the listed modalities."""
    codes = _split_list(values)
    if any(_has_wildcard(code) for code in codes):
        raise QidoError(f"{attr.keyword}: wildcards are not supported; list the codes instead.")
    return Q(**{f"{path}__overlap": codes})


def _match_integer(attr: "Attr", path: str, value: str) -> Q:
    try:
        return Q(**{path: int(value)})
    except ValueError:
        raise QidoError(f"{attr.keyword}: {value!r} is not an integer.") from None


def _range(attr: "Attr", value: str, bound: Callable[[str, bool], Any]) -> tuple[Any, Any]:
    """`A`, `A-B`, `A-` or `-B` -> (lower, upper), each None when open (PS3.4 C.2.2.2.5)."""
    start, dash, end = value.partition("-")
    if not dash:
        end = start
    if not (start or end):
        raise QidoError(f"{attr.keyword}: {value!r} is not a value or range.")
    try:
        return (bound(start, False) if start else None), (bound(end, True) if end else None)
    except ValueError:
        raise QidoError(f"{attr.keyword}: {value!r} is not a valid {attr.vr} value or range.") from None


def _date_bound(text: str, upper: bool) -> dt.date:
    if not _DATE.fullmatch(text):
        raise ValueError(text)
    return dt.datetime.strptime(text, "%Y%m%d").date()  # noqa: DTZ007 - a calendar date, no time zone


def _time_bound(text: str, upper: bool) -> str:
    """TM bounds as comparable strings: an upper bound `1015` covers up to 10:15:59.999999."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(text)
    if not upper:
        return text
    hours, minutes, seconds, fraction = match.groups()
    return f"{hours}{minutes or '59'}{seconds or '59'}.{(fraction or '').ljust(6, '9')}"


def _bounded(path: str, lower: Any, upper: Any, *, text_column: bool) -> Q:
    query = Q()
    if lower is not None:
        query &= Q(**{f"{path}__gte": lower})
    elif text_column:
        query &= Q(**{f"{path}__gt": ""})  # an empty value is no date, not the earliest one
    if upper is not None:
        query &= Q(**{f"{path}__lte": upper})
    return query


def _match_date(attr: "Attr", path: str, value: str) -> Q:
    lower, upper = _range(attr, value, _date_bound)
    return _bounded(path, lower, upper, text_column=False)


def _match_text_date(attr: "Attr", path: str, value: str) -> Q:
    """Dates kept as `YYYYMMDD` text compare correctly as strings."""
    lower, upper = _range(attr, value, _date_bound)
    as_text = [bound.strftime("%Y%m%d") if bound else None for bound in (lower, upper)]
    return _bounded(path, *as_text, text_column=True)


def _match_time(attr: "Attr", path: str, value: str) -> Q:
    """A single time matches the whole span it names (`10` is 10:00-10:59:59.999999)."""
    lower, upper = _range(attr, value, _time_bound)
    return _bounded(path, lower, upper, text_column=True)


_LIST_MATCHERS = {_match_uids, _match_any_of}

# --- Encoding (PS3.18 F.2) -----------------------------------------------------------------------


def encoder(vr: str) -> Callable[[Any], dict[str, Any]]:
    """DICOM JSON for one value (or list) of a VR, as dicomjson.attribute() writes it, with the VR's rules
    settled once: a full page is a thousand results of twenty attributes, and per-value lookups were
    most of its time."""
    if vr == "PN":
        convert: Callable[[Any], Any] = _person_name
    elif vr in ("IS", "SL", "SS", "UL", "US"):
        convert = int
    elif vr == "DA":
        convert = lambda v: v.strftime("%Y%m%d") if isinstance(v, dt.date) else str(v)  # noqa: E731
    else:
        convert = str

    def encode(value: Any) -> dict[str, Any]:
        if isinstance(value, list):
            converted = [convert(v) for v in value if v is not None and v != ""]
            return {"vr": vr, "Value": converted} if converted else {"vr": vr}
        return {"vr": vr} if value is None or value == "" else {"vr": vr, "Value": [convert(value)]}

    return encode


def _person_name(value: Any) -> dict[str, str]:
    """`Alphabetic=Ideographic=Phonetic` component groups as PS3.18 F.2.2 spells them."""
    groups = zip(("Alphabetic", "Ideographic", "Phonetic"), str(value).split("="), strict=False)
    return {name: group for name, group in groups if group}


# --- The attributes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    """One attribute QIDO knows: where the index keeps it, how it matches, whether it is returned by default."""

    keyword: str
    level: Level
    column: str | None  # the field on the level's model; None for a constant
    match: Callable[..., Q] | None = None  # None: a return key only
    default: bool = True
    constant: str | None = None
    tag: str = field(init=False)
    vr: str = field(init=False)
    encode: Callable[[Any], dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ((tag, element),) = attribute(self.keyword, None).items()
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "vr", element["vr"])
        object.__setattr__(self, "encode", encoder(element["vr"]))

    def path(self, query_level: Level) -> str | None:
        """The column as seen from a query at `query_level` (a study column from a series query: `study__x`)."""
        if self.column is None:
            return None
        if self.level == query_level:
            return self.column
        return f"{self.level.name.lower()}__{self.column}"


_S, _R, _I = Level.STUDY, Level.SERIES, Level.INSTANCE
ATTRIBUTES: dict[str, Attr] = {
    a.keyword: a
    for a in [
        # Study, PS3.18 Table 6.7.1-2 (plus Study Description).
        Attr("SpecificCharacterSet", _S, None, constant=CHARACTER_SET),
        Attr("StudyDate", _S, "study_date", _match_date),
        Attr("StudyTime", _S, "study_time", _match_time),
        Attr("AccessionNumber", _S, "accession_number", _match_text),
        Attr("InstanceAvailability", _S, None, constant="ONLINE"),
        Attr("ModalitiesInStudy", _S, "modalities", _match_any_of),
        Attr("ReferringPhysicianName", _S, "referring_physician_name", _match_person_name),
        Attr("PatientName", _S, "patient_name", _match_person_name),
        Attr("PatientID", _S, "patient_id", _match_text),
        Attr("PatientBirthDate", _S, "patient_birth_date", _match_text_date),
        Attr("PatientSex", _S, "patient_sex", _match_text),
        Attr("StudyInstanceUID", _S, "study_instance_uid", _match_uids),
        Attr("StudyID", _S, "study_id", _match_text),
        Attr("StudyDescription", _S, "study_description", _match_text),
        Attr("NumberOfStudyRelatedSeries", _S, "number_of_series"),
        Attr("NumberOfStudyRelatedInstances", _S, "number_of_instances"),
        # Series, Table 6.7.1-2a (plus Body Part Examined).
        Attr("Modality", _R, "modality", _match_text),
        Attr("SeriesDescription", _R, "series_description", _match_text),
        Attr("SeriesNumber", _R, "series_number", _match_integer),
        Attr("SeriesInstanceUID", _R, "series_instance_uid", _match_uids),
        Attr("BodyPartExamined", _R, "body_part_examined", _match_text),
        Attr("NumberOfSeriesRelatedInstances", _R, "number_of_instances"),
        # Instance, Table 6.7.1-2b.
        Attr("SOPClassUID", _I, "sop_class_uid", _match_uids),
        Attr("SOPInstanceUID", _I, "sop_instance_uid", _match_uids),
        Attr("InstanceNumber", _I, "instance_number", _match_integer),
        Attr("Rows", _I, "rows"),
        Attr("Columns", _I, "columns"),
        Attr("NumberOfFrames", _I, "number_of_frames"),
        Attr("AvailableTransferSyntaxUID", _I, "transfer_syntax_uid", default=False),
    ]
}
UNIQUE_KEYS = (ATTRIBUTES["StudyInstanceUID"], ATTRIBUTES["SeriesInstanceUID"], ATTRIBUTES["SOPInstanceUID"])

# Stable orders for paging. Studies newest first, as (organization, -study_date) serves an organization's
# callers; series and instances in their study's and series' order, as the foreign keys' indexes serve.
ORDERING = {
    Level.STUDY: ("-study_date", "-id"),
    Level.SERIES: ("study_id", "series_number", "id"),
    Level.INSTANCE: ("series_id", "instance_number", "id"),
}
# What the audit log needs of each row: the study's id, tenant and UID.
_AUDIT_COLUMNS = {
    Level.STUDY: ("id", "organization_id", "region_id", "study_instance_uid"),
    Level.SERIES: ("study_id", "organization_id", "region_id", "study__study_instance_uid"),
    Level.INSTANCE: ("study_id", "organization_id", "region_id", "study__study_instance_uid"),
}

# --- Parsing -------------------------------------------------------------------------------------


@dataclass
class Search:
    """A parsed QIDO request: the filter, what to return, and the page."""

    level: Level
    filters: Q = field(default_factory=Q)
    returned: dict[str, Attr] = field(default_factory=dict)  # keyword -> attribute
    metadata_tags: set[str] = field(default_factory=set)  # instance-level keys served from the stored JSON
    all_metadata: bool = False
    limit: int = 0
    offset: int = 0


def parse_search(
    params: QueryDict, *, level: Level, study_in_path: bool, series_in_path: bool, default_limit: int,
    max_limit: int,
) -> Search:
    """Read a QIDO query string; raises QidoError for anything it cannot honour exactly."""
    if any("\x00" in key or "\x00" in "".join(values) for key, values in params.lists()):
        raise QidoError("Query parameters cannot contain NUL characters.")  # PostgreSQL text cannot either
    search = Search(level=level, returned=_default_attributes(level, study_in_path, series_in_path))
    search.limit, search.offset = _page(params, default_limit, max_limit)
    for key, values in params.lists():
        if key in _CONTROL_PARAMETERS:
            continue
        attr = _queryable(key, level)
        search.returned[attr.keyword] = attr
        search.filters &= _filter_for(attr, level, values)
    for name in _split_list(params.getlist("includefield")):
        _include(search, name)
    return search


def _default_attributes(level: Level, study_in_path: bool, series_in_path: bool) -> dict[str, Attr]:
    """PS3.18 6.7.1.2.2: a level's defaults, plus those of each level above not fixed by the path,
    plus the unique keys of the levels above (as C-FIND returns them)."""
    shown = {level}
    if level > Level.STUDY and not study_in_path:
        shown.add(Level.STUDY)
    if level == Level.INSTANCE and not series_in_path:
        shown.add(Level.SERIES)
    chosen = {a.keyword: a for a in ATTRIBUTES.values() if a.default and a.level in shown}
    chosen.update({a.keyword: a for a in UNIQUE_KEYS if a.level <= level})
    return chosen


def _page(params: QueryDict, default_limit: int, max_limit: int) -> tuple[int, int]:
    """A limit above the server's maximum is lowered to it (PS3.18 8.3.4.4), not refused."""
    limit = _integer_parameter(params, "limit", default=default_limit, minimum=1, maximum=None)
    offset = _integer_parameter(params, "offset", default=0, minimum=0, maximum=_MAX_OFFSET)
    return min(limit, max_limit), offset


def _integer_parameter(params: QueryDict, name: str, *, default: int, minimum: int, maximum: int | None) -> int:
    values = params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise QidoError(f"{name} may be given only once.")
    try:
        number = int(values[0])
    except ValueError:
        number = minimum - 1
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise QidoError(f"{name} must be an integer {bounds}, not {values[0]!r}.")
    return number


def _keyword(name: str) -> str:
    try:
        return keyword_of(tag_hex(name))
    except (KeyError, ValueError):
        raise QidoError(f"{name!r} is neither a query parameter nor a DICOM attribute keyword or tag.") from None


def _queryable(name: str, level: Level) -> Attr:
    keyword = _keyword(name)
    attr = ATTRIBUTES.get(keyword)
    if attr is None or attr.match is None or attr.level > level:
        raise QidoError(f"Matching on {keyword} is not supported at the {level.name.lower()} level.")
    return attr


def _filter_for(attr: Attr, level: Level, values: list[str]) -> Q:
    """Empty and `*` values are universal matching (return the attribute, filter nothing)."""
    path = attr.path(level)
    if attr.match in _LIST_MATCHERS:
        values = [value for value in values if value not in ("", "*")]
        return attr.match(attr, path, values) if values else Q()
    if len(values) > 1:
        raise QidoError(f"{attr.keyword} may be given only once.")
    value = values[0]
    return Q() if value in ("", "*") else attr.match(attr, path, value)


def _include(search: Search, name: str) -> None:
    """includefield: index attributes of this level or above; at the instance level anything else
    comes from the stored DICOM JSON. Attributes nobody holds at a higher level are not returned."""
    if name == "all":
        search.returned.update({a.keyword: a for a in ATTRIBUTES.values() if a.level <= search.level})
        search.all_metadata = search.level == Level.INSTANCE
        return
    keyword = _keyword(name)
    attr = ATTRIBUTES.get(keyword)
    if attr is not None and attr.level <= search.level:
        search.returned[keyword] = attr
    elif search.level == Level.INSTANCE and keyword != "RetrieveURL":
        search.metadata_tags.add(tag_hex(name))


# --- Running and rendering -----------------------------------------------------------------------


def search_rows(queryset: QuerySet, search: Search) -> tuple[list[dict[str, Any]], bool]:
    """One SELECT of just the needed columns; one row past the page says whether more exist (no COUNT)."""
    columns = {*_AUDIT_COLUMNS[search.level]}
    columns.update(path for a in search.returned.values() if (path := a.path(search.level)))
    columns.update(a.path(search.level) for a in UNIQUE_KEYS if a.level <= search.level)
    annotations = {f"metadata_{tag}": _MetadataElement(tag) for tag in search.metadata_tags}
    if search.all_metadata:
        columns.add("metadata")
    queryset = queryset.filter(search.filters).annotate(**annotations).order_by(*ORDERING[search.level])
    rows = list(queryset.values(*columns, *annotations)[search.offset : search.offset + search.limit + 1])
    return rows[: search.limit], len(rows) > search.limit


def audited_studies(rows: list[dict[str, Any]], level: Level) -> list[Study]:
    """The distinct studies the rows came from, as record_study_access takes them (no extra query)."""
    id_key, organization_key, region_key, uid_key = _AUDIT_COLUMNS[level]
    studies: dict[int, Study] = {}
    for row in rows:
        if row[id_key] not in studies:
            studies[row[id_key]] = Study(
                id=row[id_key],
                organization_id=row[organization_key],
                region_id=row[region_key],
                study_instance_uid=row[uid_key],
            )
    return list(studies.values())


def renderer(search: Search, studies_url: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function from one row to its result in DICOM JSON, attributes in tag order. Everything that is
    the same for every row (paths, encoders, constants, the tag order) is settled here, once per request."""
    level = search.level
    parts: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = []
    for attr in search.returned.values():
        if attr.column is None:
            parts.append((attr.tag, _constant(attr.encode(attr.constant))))
        else:
            parts.append((attr.tag, _column(attr.path(level), attr.encode)))
    parts.append((RETRIEVE_URL_TAG, _retrieve_url(level, studies_url)))
    parts.sort(key=lambda part: part[0])
    from_metadata = search.all_metadata or bool(search.metadata_tags)

    def render(row: dict[str, Any]) -> dict[str, Any]:
        elements = {tag: element(row) for tag, element in parts}
        return _with_metadata(elements, row, search) if from_metadata else elements

    return render


def _constant(element: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda row: element


def _column(key: str, encode: Callable[[Any], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda row: encode(row[key])


def _retrieve_url(level: Level, studies_url: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The absolute WADO-RS URL of the result: .../studies/{s}[/series/{r}[/instances/{i}]]."""
    keys = [a.path(level) for a in UNIQUE_KEYS if a.level <= level]
    template = studies_url + "".join(f"{segment}/{{}}" for segment in ("", "/series", "/instances")[: len(keys)])
    return lambda row: {"vr": "UR", "Value": [template.format(*[row[key] for key in keys])]}


def _with_metadata(elements: dict[str, Any], row: dict[str, Any], search: Search) -> dict[str, Any]:
    """Merge attributes read from the stored DICOM JSON, BulkDataURIs made absolute as WADO-RS
    /metadata serves them; the index's values win where both have one."""
    stored = dict(row["metadata"]) if search.all_metadata else {}
    for tag in search.metadata_tags:
        if (element := row[f"metadata_{tag}"]) is not None:
            stored[tag] = element
    (instance_url,) = elements[RETRIEVE_URL_TAG]["Value"]
    merged = {**absolute_bulkdata(stored, instance_url), **elements}
    return dict(sorted(merged.items()))
