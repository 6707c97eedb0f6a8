"""ItemQueue — one manifest line per message: call the service once, store the outcome,
write the report after the last line. Partial batch responses: only failed lines return."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from facegate.batch_jobs import default_jobs, remaining_seconds
from facegate.observability import log_metrics, logger, tracer


# Not @tracer.capture_method: it logs every exception with its traceback, and a retried
# item raising is routine here (the processor reports it as a partial failure).
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    default_jobs().worker.handle_record(
        record.body,
        receive_count=int(record.attributes.approximate_receive_count),
        remaining_s=remaining_seconds(lambda_context),
        receipt_handle=record.receipt_handle,
        source_arn=record.event_source_arn,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    # The event's lines are read from the manifest together, in one ranged GET.
    default_jobs().worker.begin(record.get("body", "") for record in event.get("Records") or ())
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    default_jobs().worker.report_touched()  # the last line of a batch: write its report
    return response
