//! Frequencies of recurring duties as contracts state them ("twice daily at 09:00 and 15:00",
//! "≥2 per week", "monthly, the 10th", "first Monday"), parsed from a small grammar:
//!
//! | text | meaning |
//! | --- | --- |
//! | `daily` | once a day |
//! | `daily at 09:00, 15:00` | at each time, every day |
//! | `daily by 23:00` | once a day, done by that time |
//! | `weekly` / `weekly x2` | once / at least twice a week |
//! | `every 2 weeks` | once every two weeks |
//! | `monthly` / `monthly on 10` / `monthly first monday` | once a month / on the 10th / on its first Monday |
//! | `quarterly` / `yearly` | once a quarter / a year |

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonthDay {
    Any,
    Day(u32),
    /// 0 = Monday … 6 = Sunday.
    FirstWeekday(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frequency {
    /// `at`: minutes after midnight of each run; `by`: deadline for a once-a-day duty.
    Daily {
        at: Vec<u32>,
        by: Option<u32>,
    },
    Weekly {
        times: u32,
    },
    EveryWeeks(u32),
    Monthly(MonthDay),
    Quarterly,
    Yearly,
}

const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

fn time_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl Frequency {
    /// The longest time in whole days the duty may go undone and still be on schedule: what a
    /// "not done for too long" alert waits for (a quarterly duty: 92 days, the longest quarter).
    pub fn longest_gap_days(&self) -> i64 {
        match self {
            Frequency::Daily { .. } => 1,
            Frequency::Weekly { .. } => 7,
            Frequency::EveryWeeks(n) => 7 * i64::from(*n),
            Frequency::Monthly(_) => 31,
            Frequency::Quarterly => 92,
            Frequency::Yearly => 366,
        }
    }

    pub fn parse(text: &str) -> Result<Frequency, String> {
        let t = text.trim().to_lowercase();
        let words: Vec<&str> = t.split_whitespace().collect();
        let bad = || format!("not a frequency: {text:?}");
        match words.as_slice() {
            ["daily"] => Ok(Frequency::Daily { at: Vec::new(), by: None }),
            ["daily", "by", time] => {
                Ok(Frequency::Daily { at: Vec::new(), by: Some(time_of_day(time).ok_or_else(bad)?) })
            }
            ["daily", "at", ..] => {
                let rest = t.trim_start_matches("daily").trim().trim_start_matches("at");
                let mut at: Vec<u32> = rest.split(',').map(time_of_day).collect::<Option<_>>().ok_or_else(bad)?;
                let n = at.len();
                at.sort_unstable();
                at.dedup();
                if at.is_empty() || at.len() != n {
                    return Err(format!("{text:?}: times must be distinct"));
                }
                Ok(Frequency::Daily { at, by: None })
            }
            ["weekly"] => Ok(Frequency::Weekly { times: 1 }),
            ["weekly", n] => {
                let times: u32 = n.strip_prefix('x').and_then(|n| n.parse().ok()).ok_or_else(bad)?;
                if (1..=7).contains(&times) {
                    Ok(Frequency::Weekly { times })
                } else {
                    Err(format!("{text:?}: 1 to 7 times a week"))
                }
            }
            ["every", n, "weeks"] => {
                let n: u32 = n.parse().map_err(|_| bad())?;
                if (2..=26).contains(&n) {
                    Ok(Frequency::EveryWeeks(n))
                } else {
                    Err(format!("{text:?}: every 2 to 26 weeks"))
                }
            }
            ["monthly"] => Ok(Frequency::Monthly(MonthDay::Any)),
            ["monthly", "on", d] => {
                let d: u32 = d.parse().map_err(|_| bad())?;
                // Days after the 28th do not exist in every month: refuse rather than guess.
                if (1..=28).contains(&d) {
                    Ok(Frequency::Monthly(MonthDay::Day(d)))
                } else {
                    Err(format!("{text:?}: use a day from 1 to 28"))
                }
            }
            ["monthly", "first", day] => {
                let w = WEEKDAYS.iter().position(|w| w == day).ok_or_else(bad)?;
                Ok(Frequency::Monthly(MonthDay::FirstWeekday(w as u32)))
            }
            ["quarterly"] => Ok(Frequency::Quarterly),
            ["yearly"] => Ok(Frequency::Yearly),
            _ => Err(bad()),
        }
    }

    /// Required runs per week on average (for compliance: required vs done).
    pub fn runs_per_week(&self) -> f64 {
        match self {
            Frequency::Daily { at, .. } => 7.0 * at.len().max(1) as f64,
            Frequency::Weekly { times } => f64::from(*times),
            Frequency::EveryWeeks(n) => 1.0 / f64::from(*n),
            Frequency::Monthly(_) => 12.0 / 52.0,
            Frequency::Quarterly => 4.0 / 52.0,
            Frequency::Yearly => 1.0 / 52.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_gap() {
        let gap = |t: &str| Frequency::parse(t).unwrap().longest_gap_days();
        assert_eq!(
            [gap("daily at 09:00"), gap("weekly x2"), gap("every 2 weeks"), gap("monthly on 10"), gap("quarterly")],
            [1, 7, 14, 31, 92]
        );
    }

    #[test]
    fn grammar() {
        assert_eq!(Frequency::parse("daily at 15:00, 09:00"), Ok(Frequency::Daily { at: vec![540, 900], by: None }));
        assert_eq!(Frequency::parse("Daily by 23:00"), Ok(Frequency::Daily { at: vec![], by: Some(1380) }));
        assert_eq!(Frequency::parse("weekly x2"), Ok(Frequency::Weekly { times: 2 }));
        assert_eq!(Frequency::parse("every 2 weeks"), Ok(Frequency::EveryWeeks(2)));
        assert_eq!(Frequency::parse("monthly on 10"), Ok(Frequency::Monthly(MonthDay::Day(10))));
        assert_eq!(Frequency::parse("monthly first monday"), Ok(Frequency::Monthly(MonthDay::FirstWeekday(0))));
        assert_eq!(Frequency::parse("quarterly"), Ok(Frequency::Quarterly));
        for bad in [
            "",
            "hourly",
            "daily at 25:00",
            "daily at 09:00, 09:00",
            "weekly x9",
            "monthly on 31",
            "every 1 weeks",
            "monthly first funday",
        ] {
            assert!(Frequency::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Frequency::parse("daily at 09:00,15:00").unwrap().runs_per_week(), 14.0);
    }
}
