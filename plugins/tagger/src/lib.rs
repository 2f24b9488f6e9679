//! Tags each `transaction` and `user_action` event with `tagged_by` (this
//! plugin's name and version) and `tag` (the `tag` setting, default
//! `untagged`; an empty one is refused). Tests swap it with the example plugins for the same event
//! types and check which one produced each record.

use weir_plugin_sdk::{Config, Event, Fields, Info, Outcome, Plugin, export_plugin};

struct Tagger {
    tag: String,
}

impl Plugin for Tagger {
    fn info() -> Info {
        Info::new(
            "tagger",
            env!("CARGO_PKG_VERSION"),
            &["transaction", "user_action"],
        )
    }

    /// Refuses an empty `tag`: a plugin's own check of its configuration,
    /// without a schema, which the host finds out before binding it.
    fn configure(config: &Config) -> Result<Self, String> {
        match config.get("tag") {
            Some("") => Err("`tag` may not be empty".into()),
            tag => Ok(Self {
                tag: tag.unwrap_or("untagged").to_owned(),
            }),
        }
    }

    fn process(&self, _event: &Event) -> Outcome {
        Outcome::enrich(
            Fields::new()
                .with("tagged_by", concat!("tagger@", env!("CARGO_PKG_VERSION")))
                .with("tag", self.tag.as_str()),
        )
    }
}

export_plugin!(Tagger);
