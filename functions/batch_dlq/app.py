"""ItemDLQ and ManifestDLQ — what used up its deliveries still ends as an error line
(or a failed-batch report), never as silence."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from facegate.batch_jobs import default_jobs, remaining_seconds
from facegate.observability import log_metrics, logger, tracer


# Not @tracer.capture_method: it logs every exception with its traceback, and a retried
# item raising is routine here (the processor reports it as a partial failure).
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    default_jobs().drain.handle_record(record.body, remaining_s=remaining_seconds(lambda_context))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
