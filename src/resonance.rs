//! Offline "resonance" analysis of a message: its pace, tone and intent.
//!
//! The rules are the original service's, kept exactly so that existing callers see the same
//! `resonance_key` for the same message:
//! - pace: under 4 words per sentence with punctuation density over 0.08 is `burst`; 10 or more
//!   words per sentence is `contemplative`; anything else is `flowing`;
//! - tone: keyword hits (Korean and punctuation); the tone with the most hits wins, ties go to the
//!   order urgent, curious, frustrated, analytical; no hit at all is `calm`;
//! - intent: `?` per sentence over 0.3 is an `inquiry`, `!` per sentence over 0.3 is `expressive`,
//!   anything else a `statement`.

use serde::Serialize;

/// How fast the message reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    Burst,
    Flowing,
    Contemplative,
}

/// The emotional colour of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Urgent,
    Curious,
    Frustrated,
    Analytical,
    Calm,
}

/// What the message is trying to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Inquiry,
    Expressive,
    Statement,
}

impl Pace {
    pub fn as_str(self) -> &'static str {
        match self {
            Pace::Burst => "burst",
            Pace::Flowing => "flowing",
            Pace::Contemplative => "contemplative",
        }
    }
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Urgent => "urgent",
            Tone::Curious => "curious",
            Tone::Frustrated => "frustrated",
            Tone::Analytical => "analytical",
            Tone::Calm => "calm",
        }
    }

    /// How sure the keyword match is, as the original reported it.
    pub fn confidence(self) -> f64 {
        match self {
            Tone::Urgent | Tone::Curious => 0.7,
            Tone::Frustrated | Tone::Analytical => 0.6,
            Tone::Calm => 0.5,
        }
    }
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Inquiry => "inquiry",
            Intent::Expressive => "expressive",
            Intent::Statement => "statement",
        }
    }
}

/// Keywords per tone, in tie-break order.
const TONE_KEYWORDS: [(Tone, &[&str]); 4] = [
    (Tone::Urgent, &["급해", "빨리", "!!!", "안 돼"]),
    (Tone::Curious, &["궁금", "?", "혹시", "어떻게"]),
    (Tone::Frustrated, &["답답", "왜", "이상", "문제"]),
    (Tone::Analytical, &["분석", "확인", "리포트", "결과"]),
];

const SENTENCE_ENDS: &[char] = &['.', '!', '?', '\n', '。', '！', '？'];

/// The analysis of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Resonance {
    pub pace: Pace,
    pub tone: Tone,
    pub intent: Intent,
    /// Average number of words per sentence.
    pub avg_length: f64,
}

impl Resonance {
    /// `tone-pace-intent`, e.g. `curious-burst-inquiry`.
    pub fn key(&self) -> String {
        format!(
            "{}-{}-{}",
            self.tone.as_str(),
            self.pace.as_str(),
            self.intent.as_str()
        )
    }
}

/// Analyses a (trimmed, non-empty) message.
pub fn analyze(message: &str) -> Resonance {
    let sentences = message
        .split(SENTENCE_ENDS)
        .filter(|s| !s.trim().is_empty())
        .count()
        .max(1) as f64;
    let words = message.split_whitespace().count() as f64;
    let chars = message.chars().count().max(1) as f64;
    let punctuation = message.chars().filter(|c| is_punctuation(*c)).count() as f64;

    let avg_length = words / sentences;
    let density = punctuation / chars;
    let pace = if avg_length < 4.0 && density > 0.08 {
        Pace::Burst
    } else if avg_length >= 10.0 {
        Pace::Contemplative
    } else {
        Pace::Flowing
    };

    let questions = message.chars().filter(|c| matches!(c, '?' | '？')).count() as f64;
    let exclamations = message.chars().filter(|c| matches!(c, '!' | '！')).count() as f64;
    let intent = if questions / sentences > 0.3 {
        Intent::Inquiry
    } else if exclamations / sentences > 0.3 {
        Intent::Expressive
    } else {
        Intent::Statement
    };

    Resonance {
        pace,
        tone: detect_tone(message),
        intent,
        avg_length: (avg_length * 100.0).round() / 100.0,
    }
}

fn detect_tone(message: &str) -> Tone {
    let mut best = (Tone::Calm, 0);
    for (tone, keywords) in TONE_KEYWORDS {
        let hits: usize = keywords.iter().map(|k| message.matches(k).count()).sum();
        // Strictly greater: on a tie the earlier tone keeps its place.
        if hits > best.1 {
            best = (tone, hits);
        }
    }
    best.0
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || "。、，！？…·「」『』（）《》〈〉～".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_in_korean_is_curious_burst_inquiry() {
        let r = analyze("어떻게 해야 하나요?");
        assert_eq!(r.key(), "curious-burst-inquiry");
        assert_eq!(r.avg_length, 3.0);
    }

    #[test]
    fn long_sentences_are_contemplative() {
        let r = analyze(
            "오늘은 프로젝트의 전체적인 방향과 앞으로 우리가 해야 할 일들에 대해서 천천히 \
             생각해 보고 싶습니다.",
        );
        assert_eq!(r.pace, Pace::Contemplative);
        assert_eq!(r.tone, Tone::Calm);
        assert_eq!(r.intent, Intent::Statement);
    }

    #[test]
    fn plain_medium_sentence_is_flowing() {
        let r = analyze("I would like to talk about my team today");
        assert_eq!(r.key(), "calm-flowing-statement");
    }

    #[test]
    fn urgent_exclamations_are_expressive() {
        let r = analyze("빨리 해줘!!! 급해!!!");
        assert_eq!(r.tone, Tone::Urgent);
        assert_eq!(r.intent, Intent::Expressive);
        assert_eq!(r.pace, Pace::Burst);
    }

    #[test]
    fn most_keyword_hits_win_the_tone() {
        // One `?` (curious) against four frustrated keywords.
        let r = analyze("왜 이렇게 답답하지? 문제가 이상해");
        assert_eq!(r.tone, Tone::Frustrated);
    }

    #[test]
    fn tone_ties_go_to_the_earlier_tone() {
        // One curious hit (`?`) and one analytical hit (`분석`).
        assert_eq!(analyze("분석 좀 해줄래?").tone, Tone::Curious);
    }

    #[test]
    fn analytical_keywords() {
        let r = analyze("지난 분기 결과 리포트를 확인하고 정리했습니다.");
        assert_eq!(r.tone, Tone::Analytical);
        assert_eq!(r.intent, Intent::Statement);
    }

    #[test]
    fn tone_confidences_follow_the_original() {
        assert_eq!(Tone::Urgent.confidence(), 0.7);
        assert_eq!(Tone::Frustrated.confidence(), 0.6);
        assert_eq!(Tone::Calm.confidence(), 0.5);
    }
}
