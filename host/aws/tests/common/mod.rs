//! Helpers shared by the AWS tests: reading back what the backends wrote.
#![allow(dead_code)] // each test file uses its own subset

use aws_sdk_sqs::types::Message;
use weir_core::backend::ObjectStore;

/// The URL of the queue named `name`.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let out = sqs.get_queue_url().queue_name(name).send().await.unwrap();
    out.queue_url().unwrap().to_owned()
}

/// Every message the queue holds now, with its attributes: received until a
/// receive comes back empty.
pub async fn receive_all(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Message> {
    let mut messages = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            break;
        }
        messages.extend(out.messages().iter().cloned());
    }
    messages
}

/// The JSON Lines lines of every object under `prefix`.
pub async fn line_count(objects: &impl ObjectStore, prefix: &str) -> usize {
    let mut lines = 0;
    for key in objects.list(prefix).await.unwrap() {
        let body = objects.get(&key).await.unwrap().unwrap_or_default();
        lines += body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
    }
    lines
}
