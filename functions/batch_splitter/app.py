"""ManifestQueue (S3 ObjectCreated under batches/) — read a manifest, queue its items."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from facegate.batch_jobs import default_jobs
from facegate.observability import log_metrics, logger, tracer


# Not @tracer.capture_method: it logs every exception with its traceback, and a retried
# item raising is routine here (the processor reports it as a partial failure).
def record_handler(record: SQSRecord) -> None:
    default_jobs().splitter.handle_record(record.body)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    # One processor per invocation: its state is per batch of records.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
