"""Validation of an XML package before it is offered: both files against our XSDs, and the sums the XSD
cannot check, in one streamed pass without building a tree."""

import queue
import re
import threading
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import IO

from lxml import etree

from billing.register.model import ENCODING, SCHEMAS, RegisterInvalid

# --- validation ----------------------------------------------------------------------------------------------


_CHUNK = 1 << 16  # bytes read from a member at a time
_MAX_TOKEN = 1 << 20  # a tag or text longer than this is refused rather than held
_DECLARATION = re.compile(rb"""<\?xml[^?]*encoding=["']windows-1251["']""", re.IGNORECASE)
_AMOUNT = re.compile(rb"<SUMV>\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*(?:<|\Z)")
_HEADER_VALUE = re.compile(rb"<(SD_Z|SUMMAV|FILENAME1?)>\s*([^<\s]*)")


class _NoTree:
    """Parser target without handlers: libxml2 parses and validates, and builds no tree."""

    def close(self) -> None:
        return None


class _Tally:
    """A member's bytes for the parser, with what the XSD cannot check read off them on the way.

    Counts the records (ZAP or PERS), adds up SUMV and keeps the header's SD_Z, SUMMAV and FILENAMEs with
    their lines. Bytes are examined up to the last "<", so no tag or text is cut in two. Exact for a file
    without comments, CDATA, DOCTYPE or processing instructions: they are counted in markup, and refused.
    """

    def __init__(self, stream: IO[bytes], record: str) -> None:
        self._stream, self._pending = stream, b""
        self._record = re.compile(rb"<%s[\s>]" % record.encode())  # starts with a literal: a fast search
        self.records, self.amounts, self.markup, self.declared = 0, Decimal(0), 0, False
        self.header: dict[str, tuple[str, int]] = {}
        self.line = 1  # counted up to the first record, the end of the header

    def read(self, size: int) -> bytes:
        chunk = self._stream.read(max(size, _CHUNK))
        pending = self._pending + chunk
        cut = max(pending.rfind(b"<"), 0) if chunk else len(pending)
        self._count(pending[:cut])
        self._pending = pending[cut:]
        if len(self._pending) > _MAX_TOKEN:
            raise RegisterInvalid(f"a tag or text over {_MAX_TOKEN} bytes")
        return chunk

    def _count(self, block: bytes) -> None:
        if not self.records:  # a valid file has its header before the first record
            self._read_header(block)
        self.records += len(self._record.findall(block))
        self.amounts += sum(Decimal(value.decode()) for value in _AMOUNT.findall(block))
        for mark in (b"!", b"?"):  # memchr first: b"<!" is a slow search where "<" is everywhere
            if mark in block:
                self.markup += block.count(b"<" + mark)

    def _read_header(self, block: bytes) -> None:
        self.declared = self.declared or (self.line == 1 and bool(_DECLARATION.match(block)))
        for match in _HEADER_VALUE.finditer(block):
            line = self.line + block.count(b"\n", 0, match.start())
            self.header.setdefault(match[1].decode(), (match[2].decode(ENCODING, "replace"), line))
        self.line += block.count(b"\n")


def _members(archive: zipfile.ZipFile) -> tuple[str, str]:
    names = archive.namelist()
    hm = [name for name in names if re.fullmatch(r"HM.+\.XML", name, re.IGNORECASE)]
    lm = [name for name in names if re.fullmatch(r"LM.+\.XML", name, re.IGNORECASE)]
    if len(hm) != 1 or len(lm) != 1 or len(names) != 2:
        raise RegisterInvalid(f"the package must hold one HM and one LM file, it holds {names}")
    return hm[0], lm[0]


@cache
def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def _parser(schema: etree.XMLSchema) -> etree.XMLParser:
    return etree.XMLParser(schema=schema, target=_NoTree(), resolve_entities=False, no_network=True)


def _scan(archive: zipfile.ZipFile, member: str, schema: etree.XMLSchema, record: str) -> _Tally:
    """Validate the member against the schema in one streamed pass, without a tree, tallying it."""
    parser = _parser(schema)
    try:
        with archive.open(member) as stream:
            tally = _Tally(stream, record)
            etree.parse(tally, parser)  # with a target, schema errors are logged, not raised
    except etree.XMLSyntaxError as error:  # not well-formed: libxml2 knows the line
        raise _refusal(member, error.lineno, error) from error
    except (RegisterInvalid, zipfile.BadZipFile, zlib.error) as error:
        raise RegisterInvalid(f"{member}: {error}") from error
    if error := _first_error(parser.error_log):
        raise _locate(archive, member, schema, error.message)
    return tally


def _first_error(log: etree._ListErrorLog) -> etree._LogEntry | None:
    errors = log.filter_from_errors()
    return errors[0] if errors else None


def _refusal(member: str, line: int, error: etree.XMLSyntaxError) -> RegisterInvalid:
    # lxml words the error of a validating target parser 'line 4: b"expected \'>\'"': keep what is quoted
    quoted = re.fullmatch(r"""line \d+: b(["'])(.*)\1""", error.msg)
    return RegisterInvalid(f"{member}, line {line}: {quoted[2] if quoted else error.msg}")


def _locate(archive: zipfile.ZipFile, member: str, schema: etree.XMLSchema, message: str) -> RegisterInvalid:
    """The schema's error with its line, which libxml2 does not give while streaming.

    Only for a failed file: parses it again a line at a time and stops at the first line that logs an error.
    """
    parser, line = _parser(schema), 1
    try:
        with archive.open(member) as stream:
            for piece in iter(lambda: stream.readline(_MAX_TOKEN), b""):
                parser.feed(piece)
                if error := _first_error(parser.feed_error_log):
                    return RegisterInvalid(f"{member}, line {line}: {error.message}")
                line += piece.count(b"\n")
    except etree.XMLSyntaxError as error:
        return _refusal(member, error.lineno or line, error)
    return RegisterInvalid(f"{member}: {message}")


def _value(member: str, tally: _Tally, tag: str) -> tuple[str, int]:
    if tag not in tally.header:
        raise RegisterInvalid(f"{member}: no {tag}")
    return tally.header[tag]


def _check_form(member: str, tally: _Tally) -> None:
    if not tally.declared:
        raise RegisterInvalid(f"{member}, line 1: not declared {ENCODING}")
    if tally.markup != 1:
        raise RegisterInvalid(f"{member}: comments, CDATA, a DOCTYPE or processing instructions, "
                              "which a register does not have")


def _check_name(member: str, tally: _Tally, tag: str, expected: str) -> None:
    name, line = _value(member, tally, tag)
    if name != Path(expected).stem:
        raise RegisterInvalid(f"{member}, line {line}: {tag} is {name}, not {Path(expected).stem}")


def _check_register(member: str, tally: _Tally) -> None:
    """SD_Z is the number of ZAP, SUMMAV the sum of SUMV, FILENAME the member's name."""
    count, line = _value(member, tally, "SD_Z")
    if int(count) != tally.records:
        raise RegisterInvalid(f"{member}, line {line}: SD_Z is {count}, the file holds {tally.records} ZAP")
    total, line = _value(member, tally, "SUMMAV")
    if Decimal(total) != tally.amounts:
        raise RegisterInvalid(f"{member}, line {line}: SUMMAV is {total}, the SUMV add up to {tally.amounts}")
    _check_name(member, tally, "FILENAME", member)


def _check_persons(member: str, tally: _Tally, register: str, records: int) -> None:
    """One PERS per ZAP, FILENAME the member's name and FILENAME1 the register's."""
    if tally.records != records:
        raise RegisterInvalid(f"{member}: {tally.records} PERS for {records} ZAP in {register}")
    _check_name(member, tally, "FILENAME", member)
    _check_name(member, tally, "FILENAME1", register)


def validate_xml_package(package: str | Path | IO[bytes]) -> None:
    """Refuse, with RegisterInvalid naming the member and the line, a package that must not go to the fund.

    Each member is validated against its XSD in one streamed pass, in constant memory, the two at once
    (lxml parses a file-like object without the GIL); then what a schema cannot check: SD_Z against the
    ZAP, SUMMAV against the SUMV, the file names, one PERS per ZAP.
    """
    try:
        archive = zipfile.ZipFile(package)
    except zipfile.BadZipFile as error:
        raise RegisterInvalid(f"not a ZIP package: {error}") from error
    with archive, ThreadPoolExecutor(2) as pool:
        hm, lm = _members(archive)
        scans = pool.submit(_scan, archive, hm, _schema("register.xsd"), "ZAP"), \
            pool.submit(_scan, archive, lm, _schema("persons.xsd"), "PERS")
        register, persons = (scan.result() for scan in scans)
    _check_form(hm, register)
    _check_form(lm, persons)
    _check_register(hm, register)
    _check_persons(lm, persons, hm, register.records)


class _Pipe:
    """Bytes handed from the writer to a validating parser in another thread (a bounded queue: the writer
    waits when the parser is behind, so memory stays constant)."""

    def __init__(self) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=2)  # a write is a batch of 2,000 records
        self._rest, self._ended = b"", False

    def write(self, data: bytes) -> None:
        self._chunks.put(data)

    def close(self) -> None:
        self._chunks.put(None)

    def read(self, size: int) -> bytes:
        while not self._rest:
            chunk = None if self._ended else self._chunks.get()
            if chunk is None:
                self._ended = True
                return b""
            self._rest = chunk
        piece, self._rest = self._rest[:size], self._rest[size:]
        return piece

    def drain(self) -> None:
        """After a failed parse: take what the writer still sends, so it never waits for nobody."""
        while not self._ended:
            self._ended = self._chunks.get() is None


class StreamValidation:
    """Validate a member while it is written: `write` hands its bytes to a parser in a thread; `result`
    waits for the end and returns the tally, or None when the member must be validated again from the
    file to name the line of its error (`validate_xml_package` does that)."""

    def __init__(self, schema_name: str, record: str) -> None:
        self.pipe, self.tally = _Pipe(), None
        self._thread = threading.Thread(target=self._run, args=(_schema(schema_name), record), daemon=True)
        self._thread.start()

    def _run(self, schema: etree.XMLSchema, record: str) -> None:
        parser = _parser(schema)
        try:
            tally = _Tally(self.pipe, record)
            etree.parse(tally, parser)
        except Exception:  # any failure: the package is validated again from the file, which names it
            self.pipe.drain()
            return
        if not _first_error(parser.error_log):
            self.tally = tally

    def write(self, data: bytes) -> None:
        self.pipe.write(data)

    def result(self) -> _Tally | None:
        self.pipe.close()
        self._thread.join()
        return self.tally


def validate_written_package(package: str | Path, register: _Tally | None, persons: _Tally | None) -> None:
    """Finish what StreamValidation began: the checks a schema cannot make, and the archive's integrity.
    A member that failed its schema is validated again from the package, which names the line."""
    if register is None or persons is None:
        validate_xml_package(package)
        raise RegisterInvalid("the package failed its schema while written, but not when read back")
    with zipfile.ZipFile(package) as archive:
        hm, lm = _members(archive)
        if broken := archive.testzip():
            raise RegisterInvalid(f"{broken}: damaged in the archive")
    _check_form(hm, register)
    _check_form(lm, persons)
    _check_register(hm, register)
    _check_persons(lm, persons, hm, register.records)
