"""A Salesforce simulator (what moto is for AWS): the REST/SOAP subset simple-salesforce uses.

* :mod:`tally_local.sfsim.store` - SQLite store, one table per object of ``tally.catalog.SALESFORCE``
* :mod:`tally_local.sfsim.soql` - SOQL subset parser/translator to parameterised SQLite SQL
* :mod:`tally_local.sfsim.server` - the HTTPS server (``start_in_thread`` for tests)
* :mod:`tally_local.sfsim.faults` - deterministic fault injection (:class:`Faults`)
* :mod:`tally_local.sfsim.bulk` - Bulk API 2.0 query jobs
* :mod:`tally_local.sfsim.scenarios` - data scenarios on the store: deletes, purges, ties, late commits
* :mod:`tally_local.sfsim.tls` - throw-away certificate for 127.0.0.1/localhost
* ``python -m tally_local.sfsim`` - run it for the stack
"""

from tally_local.sfsim.faults import Faults
from tally_local.sfsim.server import (
    Credentials,
    SalesforceSimulator,
    generate_credentials,
    make_server,
    read_credentials,
    start_in_thread,
    write_credentials,
)
from tally_local.sfsim.soql import SoqlError, SoqlQuery, parse, translate
from tally_local.sfsim.store import SalesforceStore

__all__ = [
    "Credentials",
    "Faults",
    "SalesforceSimulator",
    "SalesforceStore",
    "SoqlError",
    "SoqlQuery",
    "generate_credentials",
    "make_server",
    "parse",
    "read_credentials",
    "start_in_thread",
    "translate",
    "write_credentials",
]
