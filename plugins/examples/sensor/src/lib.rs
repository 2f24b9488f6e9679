//! Enriches IoT sensor readings (`sensor_reading` events, the seed's `sensorId`,
//! `temperature` in °C, `humidity` in %).
//!
//! Adds:
//! - `reading_date`: UTC date of the reading;
//! - `temperature_out_of_range`: outside the tenant's `temp_min`..`temp_max`
//!   (default -40..85 °C, the usual operating range of consumer sensors);
//! - `humidity_out_of_range`: outside 0..100 %;
//! - `comfort`: `comfortable` for 20-26 °C and 30-60 % humidity, else the first of
//!   `too_cold`, `too_hot`, `too_dry`, `too_humid` that applies;
//! - `heat_index_c`: the NWS Rothfusz heat index in °C, rounded to 0.1, when it
//!   applies (from 26.7 °C / 80 °F and 40 % humidity); otherwise the temperature.
//!   Omitted when the temperature is out of range: a broken sensor has none.
//! - `temperature_f` when the tenant sets `units=fahrenheit` (a per-tenant label).

use serde::Deserialize;
use weir_plugin_sdk::{Config, Event, Fields, Info, Outcome, Plugin, export_plugin};

struct Sensor {
    temp_min: f64,
    temp_max: f64,
    fahrenheit: bool,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(rename = "sensorId", borrow)]
    sensor_id: &'a str,
    temperature: f64,
    humidity: f64,
}

fn comfort(t: f64, h: f64) -> &'static str {
    if t < 20.0 {
        "too_cold"
    } else if t > 26.0 {
        "too_hot"
    } else if h < 30.0 {
        "too_dry"
    } else if h > 60.0 {
        "too_humid"
    } else {
        "comfortable"
    }
}

fn heat_index_c(t_c: f64, h: f64) -> f64 {
    let t = t_c * 9.0 / 5.0 + 32.0;
    if t < 80.0 || h < 40.0 {
        return t_c;
    }
    let hi = -42.379 + 2.04901523 * t + 10.14333127 * h
        - 0.22475541 * t * h
        - 0.00683783 * t * t
        - 0.05481717 * h * h
        + 0.00122874 * t * t * h
        + 0.00085282 * t * h * h
        - 0.00000199 * t * t * h * h;
    let c = (hi - 32.0) * 5.0 / 9.0;
    (c * 10.0).round() / 10.0
}

impl Plugin for Sensor {
    fn info() -> Info {
        Info::new("sensor", env!("CARGO_PKG_VERSION"), &["sensor_reading"])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        let temp_min = config.parse_or("temp_min", -40.0)?;
        let temp_max = config.parse_or("temp_max", 85.0)?;
        if temp_min >= temp_max {
            return Err(format!(
                "need temp_min < temp_max, got {temp_min} and {temp_max}"
            ));
        }
        let fahrenheit = match config.get("units").unwrap_or("celsius") {
            "celsius" => false,
            "fahrenheit" => true,
            other => {
                return Err(format!(
                    "config key `units`: `{other}`, expected celsius or fahrenheit"
                ));
            }
        };
        Ok(Self {
            temp_min,
            temp_max,
            fahrenheit,
        })
    }

    fn process(&self, event: &Event) -> Outcome {
        let p: Payload = match event.parse() {
            Ok(p) => p,
            Err(rejection) => return Outcome::reject(rejection),
        };
        let temperature_out_of_range =
            p.temperature < self.temp_min || p.temperature > self.temp_max;
        let mut fields = Fields::new()
            .with("sensor_id", p.sensor_id)
            .with("reading_date", event.event_date())
            .with("temperature_out_of_range", temperature_out_of_range)
            .with(
                "humidity_out_of_range",
                !(0.0..=100.0).contains(&p.humidity),
            )
            .with("comfort", comfort(p.temperature, p.humidity));
        if !temperature_out_of_range {
            fields.insert("heat_index_c", heat_index_c(p.temperature, p.humidity));
        }
        if self.fahrenheit {
            let f = p.temperature * 9.0 / 5.0 + 32.0;
            fields.insert("temperature_f", (f * 10.0).round() / 10.0);
        }
        Outcome::enrich(fields)
    }
}

export_plugin!(Sensor);
