"""Writers of an organization's OMS register for a closed period: the FFOMS XML package, CSV and XLSX.

One register per medical organization and closed billing period is what the territorial OMS fund pays
against, so a register is written once, from the services of that period, and numbered (N in the file
names, CODE and NSCHET of the invoice). A large organization bills up to a million services a month:
every writer consumes its lines once, from a database cursor, and keeps no more than a batch of them in
memory. The XML package is validated against our XSDs (schemas/) before it is offered, so a malformed
file never reaches the fund; validation streams as well.

Pure code: no database, no Django.

XML package: a ZIP (deflated) with the HM register file (ZL_LIST) and the LM personal-data file
(PERS_LIST), both windows-1251. One ZAP per service, one line per ZAP (so a validation error's line is
the record's line); ID_PAC, IDCASE, SL_ID and IDSERV are the service's id. NSCHET is f"{YYMM}{N}", the
file names' suffix. Text outside windows-1251 becomes "?" and control characters are dropped.

CSV: UTF-8 with a BOM, ";" separated, decimal comma and dates DD.MM.YYYY, as Russian Excel reads them.
"""

from billing.register.model import (
    SCHEMAS,
    RegisterHeader,
    RegisterInvalid,
    RegisterLine,
    register_file_names,
)
from billing.register.tables import write_csv, write_xlsx
from billing.register.validation import validate_xml_package
from billing.register.xml import write_validated_xml_package, write_xml_package

__all__ = ["SCHEMAS", "RegisterHeader", "RegisterInvalid", "RegisterLine", "register_file_names",
           "validate_xml_package", "write_csv", "write_validated_xml_package", "write_xlsx", "write_xml_package"]
