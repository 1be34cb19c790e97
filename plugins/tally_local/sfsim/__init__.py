"""A Salesforce simulator (what moto is for AWS): the REST/SOAP subset simple-salesforce uses.

* :mod:`tally_local.sfsim.store` - SQLite store, one table per object of ``tally.catalog.SALESFORCE``
* :mod:`tally_local.sfsim.soql` - SOQL subset parser/translator to parameterised SQLite SQL
* :mod:`tally_local.sfsim.server` - the HTTPS server: its state, ``make_server``, ``start_in_thread`` (tests)
* :mod:`tally_local.sfsim.handler` - the request handler: routes, API-call admission, responses, logging
* :mod:`tally_local.sfsim.auth` - credentials, SOAP and OAuth login
* :mod:`tally_local.sfsim.rest` - REST versions, limits, describe, query/queryAll
* :mod:`tally_local.sfsim.admin` - the ``/__admin`` fault-control API
* :mod:`tally_local.sfsim.faults` - deterministic fault injection (:class:`Faults`)
* :mod:`tally_local.sfsim.bulk` - Bulk API 2.0 query jobs; :mod:`tally_local.sfsim.bulk_routes` - their routes
* :mod:`tally_local.sfsim.scenarios` - data scenarios on the store: deletes, purges, ties, late commits
* :mod:`tally_local.sfsim.tls` - throw-away certificate for 127.0.0.1/localhost
* ``python -m tally_local.sfsim`` - run it for the stack
"""

from tally_local.sfsim.auth import Credentials, generate_credentials, read_credentials, write_credentials
from tally_local.sfsim.faults import Faults
from tally_local.sfsim.server import SalesforceSimulator, make_server, start_in_thread
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
