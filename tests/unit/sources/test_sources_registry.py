"""The ``Source`` protocols and the registry that finds a dataset's source by name."""

from __future__ import annotations

import pytest

from tally import catalog, contract, sources
from tally.core.config import PostgresConn, SalesforceConn
from tally.core.resources import Resources
from tally.lake import Lake
from tally.sources import IntervalSource, Source, StreamSource
from tally.sources.erp import ErpSource
from tally.sources.kafka import KafkaSource
from tally.sources.salesforce import SalesforceSource

WAREHOUSE = PostgresConn("127.0.0.1", 5432, "tally", "secret", "warehouse")


def _resources(tmp_path, **kw) -> Resources:
    return Resources(lake=Lake(str(tmp_path / "lake")), warehouse=WAREHOUSE, **kw)


def test_every_raw_dataset_has_an_interval_source_named_like_its_ids(tmp_path):
    res = _resources(tmp_path, erp=WAREHOUSE,
                     salesforce=SalesforceConn("https://login.example", "u", "p", "t"))
    for dataset_id in contract.RAW_DATASETS:
        dataset = catalog.get(dataset_id)
        source = sources.for_dataset(res, dataset)
        assert isinstance(source, IntervalSource) and isinstance(source, Source)
        assert source.name == dataset.source == dataset_id.split(".")[0]
    assert set(sources.FACTORIES) == {d.split(".")[0] for d in contract.RAW_DATASETS}


@pytest.mark.parametrize(("dataset_id", "message"), [("erp.customers", "no ERP connection configured"),
                                                     ("salesforce.Account", "no Salesforce connection configured")])
def test_a_missing_connection_is_a_clear_error(tmp_path, dataset_id, message):
    with pytest.raises(ValueError, match=message):
        sources.for_dataset(_resources(tmp_path), catalog.get(dataset_id))


def test_an_unknown_source_name_is_a_key_error(tmp_path):
    with pytest.raises(KeyError, match="no source named 'sap'"):
        sources.interval_source(_resources(tmp_path), "sap")


def test_the_classes_implement_their_protocols():
    assert ErpSource.name == "erp" and SalesforceSource.name == "salesforce" and KafkaSource.name == "kafka"
    kafka = KafkaSource("127.0.0.1:9092")
    assert isinstance(kafka, StreamSource) and not isinstance(kafka, IntervalSource)
    assert kafka.topic == contract.EVENTS_TOPIC and kafka.group_id == contract.EVENTS_GROUP
    assert isinstance(ErpSource(WAREHOUSE), IntervalSource)
