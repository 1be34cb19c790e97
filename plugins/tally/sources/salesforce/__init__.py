"""Salesforce: ``SalesforceSource``, an interval source.

- :mod:`tally.sources.salesforce.extract` — one object, one data interval, to the lake;
- :mod:`tally.sources.salesforce.client` — retries, re-login, throttling and Bulk API 2.0;
- :mod:`tally.sources.salesforce.auth` — login at a configurable login URL.
"""

from tally.sources.salesforce.extract import SalesforceSource

__all__ = ["SalesforceSource"]
