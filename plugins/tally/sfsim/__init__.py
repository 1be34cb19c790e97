"""A Salesforce simulator (what moto is for AWS): the REST/SOAP subset simple-salesforce uses.

* :mod:`tally.sfsim.store` - SQLite store, one table per object of ``tally.catalog.SALESFORCE``
* :mod:`tally.sfsim.soql` - SOQL subset parser/translator to parameterised SQLite SQL
* :mod:`tally.sfsim.server` - the HTTPS server (``start_in_thread`` for tests)
* :mod:`tally.sfsim.faults` - deterministic fault injection (:class:`Faults`)
* :mod:`tally.sfsim.bulk` - Bulk API 2.0 query jobs
* :mod:`tally.sfsim.scenarios` - data scenarios on the store: deletes, purges, ties, late commits
* :mod:`tally.sfsim.tls` - throw-away certificate for 127.0.0.1/localhost
* ``python -m tally.sfsim`` - run it for the stack
"""

from tally.sfsim.faults import Faults
from tally.sfsim.server import (
    Credentials,
    SalesforceSimulator,
    generate_credentials,
    make_server,
    read_credentials,
    start_in_thread,
    write_credentials,
)
from tally.sfsim.soql import SoqlError, SoqlQuery, parse, translate
from tally.sfsim.store import SalesforceStore

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
