//! The four mentor personas and how a message's resonance routes to one of them.
//!
//! Score = 0.5 when the persona prefers the message's tone, plus a pace score (0.1–0.3) and an
//! intent score (0.1–0.2). The highest score wins and becomes the response's `confidence`; ties go
//! to the order Lua, Elro, Riri, Nana. Scores are kept in tenths so that sums are exact.

use crate::resonance::{Intent, Pace, Resonance, Tone};

/// A mentor persona.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    Lua,
    Elro,
    Riri,
    Nana,
}

impl Persona {
    /// Every persona, in tie-break order.
    pub const ALL: [Persona; 4] = [Persona::Lua, Persona::Elro, Persona::Riri, Persona::Nana];

    pub fn name(self) -> &'static str {
        match self {
            Persona::Lua => "Lua",
            Persona::Elro => "Elro",
            Persona::Riri => "Riri",
            Persona::Nana => "Nana",
        }
    }

    /// A persona by name, case-insensitive.
    pub fn parse(name: &str) -> Option<Persona> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Tones this persona is best at. The original also listed tones the analyser never
    /// produces (playful, anxious, confused, collaborative); they are in [`Self::character`].
    fn preferred_tones(self) -> &'static [Tone] {
        match self {
            Persona::Lua => &[Tone::Frustrated],
            Persona::Elro => &[Tone::Curious, Tone::Analytical, Tone::Calm],
            Persona::Riri => &[Tone::Analytical, Tone::Calm, Tone::Curious],
            Persona::Nana => &[Tone::Urgent],
        }
    }

    /// Pace fit, in tenths.
    fn pace_score(self, pace: Pace) -> u8 {
        match (self, pace) {
            (Persona::Lua, Pace::Flowing) => 3,
            (Persona::Lua, Pace::Contemplative) => 2,
            (Persona::Elro, Pace::Contemplative) => 3,
            (Persona::Elro, Pace::Flowing) => 2,
            (Persona::Riri, Pace::Flowing) => 3,
            (Persona::Riri, Pace::Contemplative) => 2,
            (Persona::Nana, Pace::Burst) => 3,
            (Persona::Nana, Pace::Flowing) => 2,
            _ => 1,
        }
    }

    /// Intent fit, in tenths.
    fn intent_score(self, intent: Intent) -> u8 {
        match (self, intent) {
            (Persona::Lua, Intent::Expressive)
            | (Persona::Elro, Intent::Inquiry)
            | (Persona::Riri, Intent::Statement)
            | (Persona::Nana, Intent::Expressive) => 2,
            _ => 1,
        }
    }

    /// Who the persona is, in one line (used in the system instruction and in `GET /`).
    pub fn character(self) -> &'static str {
        match self {
            Persona::Lua => {
                "an empathetic mentor for frustrated, playful or anxious moments: you name the \
                 feeling first, then help the person find one small next step"
            }
            Persona::Elro => {
                "a structured, logical mentor for curious, analytical or calm questions: you \
                 break problems into clear parts and explain the reasoning between them"
            }
            Persona::Riri => {
                "a data-minded mentor for analytical, calm or curious questions: you ground \
                 advice in evidence, numbers and ways to check them"
            }
            Persona::Nana => {
                "a practical coordinator for urgent, confused or collaborative moments: you \
                 turn a situation into quick, concrete steps and who does what"
            }
        }
    }

    fn reply_style(self) -> &'static str {
        match self {
            Persona::Lua => "따뜻하고 부드러운 말투로, 공감 한 문장으로 시작하세요.",
            Persona::Elro => "차분하고 논리적인 말투로, 번호를 붙인 단계로 설명하세요.",
            Persona::Riri => "정확하고 객관적인 말투로, 근거와 확인 방법을 함께 제시하세요.",
            Persona::Nana => "짧고 명확한 말투로, 바로 실행할 수 있는 체크리스트를 주세요.",
        }
    }

    /// The system instruction sent to Gemini for this persona and this message's analysis.
    pub fn system_instruction(self, resonance: &Resonance) -> String {
        format!(
            "당신은 Ion 멘토링 서비스의 멘토 {name}입니다. You are {name}, {character}.\n\
             말투: {style}\n\
             The user's message was analysed as resonance key `{key}` (tone: {tone}, pace: \
             {pace}, intent: {intent}); match its pace: short and direct for a burst, \
             unhurried for a contemplative message.\n\
             Answer in the language the user wrote in (Korean by default). Keep the answer \
             focused and under about 300 words. Never invent facts about the user; if the \
             question is unclear, ask one clarifying question.",
            name = self.name(),
            character = self.character(),
            style = self.reply_style(),
            key = resonance.key(),
            tone = resonance.tone.as_str(),
            pace = resonance.pace.as_str(),
            intent = resonance.intent.as_str(),
        )
    }
}

/// The routing decision for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub persona: Persona,
    /// Score of the winning persona, 0.0–1.0.
    pub confidence: f64,
    pub secondary: Persona,
    pub reasoning: String,
}

/// A persona's fit for an analysed message, in tenths.
fn score(p: Persona, resonance: &Resonance) -> u8 {
    let tone = if p.preferred_tones().contains(&resonance.tone) {
        5
    } else {
        0
    };
    tone + p.pace_score(resonance.pace) + p.intent_score(resonance.intent)
}

/// The routing for a persona the caller chose: its own fit is the confidence, and the
/// persona routing would have picked is named as the alternative.
pub fn chosen(persona: Persona, resonance: &Resonance) -> Routing {
    let routed = route(resonance);
    let secondary = if routed.persona == persona {
        routed.secondary
    } else {
        routed.persona
    };
    Routing {
        persona,
        confidence: f64::from(score(persona, resonance)) / 10.0,
        secondary,
        reasoning: format!(
            "chosen by the caller; routing would have picked {} ({})",
            routed.persona.name(),
            routed.reasoning
        ),
    }
}

/// Picks the persona for an analysed message.
pub fn route(resonance: &Resonance) -> Routing {
    let score = |p: Persona| score(p, resonance);

    // Stable sort keeps the tie-break order of `Persona::ALL` among equal scores.
    let mut ranked = Persona::ALL.map(|p| (p, score(p)));
    ranked.sort_by_key(|(_, score)| std::cmp::Reverse(*score));
    let (persona, best) = ranked[0];
    let (secondary, _) = ranked[1];

    let tone_part = if persona.preferred_tones().contains(&resonance.tone) {
        format!(
            "tone '{}' is one {} prefers (+0.5)",
            resonance.tone.as_str(),
            persona.name()
        )
    } else {
        format!(
            "tone '{}' is not a preferred tone (+0.0)",
            resonance.tone.as_str()
        )
    };
    let reasoning = format!(
        "{tone_part}; pace '{}' +0.{}; intent '{}' +0.{}; runner-up {}",
        resonance.pace.as_str(),
        persona.pace_score(resonance.pace),
        resonance.intent.as_str(),
        persona.intent_score(resonance.intent),
        secondary.name(),
    );

    Routing {
        persona,
        confidence: f64::from(best) / 10.0,
        secondary,
        reasoning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resonance::analyze;

    /// message → (persona, resonance key, confidence)
    const TABLE: &[(&str, &str, &str, f64)] = &[
        ("어떻게 해야 하나요?", "Elro", "curious-burst-inquiry", 0.8),
        (
            "왜 이렇게 답답하지? 문제가 이상해",
            "Lua",
            "frustrated-flowing-inquiry",
            0.9,
        ),
        (
            "빨리 해줘!!! 급해!!!",
            "Nana",
            "urgent-burst-expressive",
            1.0,
        ),
        (
            "지난 분기 결과 리포트를 확인하고 정리했습니다.",
            "Riri",
            "analytical-flowing-statement",
            1.0,
        ),
        (
            "I would like to talk about my team today",
            "Riri",
            "calm-flowing-statement",
            1.0,
        ),
        (
            "오늘은 프로젝트의 전체적인 방향과 앞으로 우리가 해야 할 일들에 대해서 천천히 생각해 보고 싶습니다.",
            "Elro",
            "calm-contemplative-statement",
            0.9,
        ),
    ];

    #[test]
    fn routing_table() {
        for (message, persona, key, confidence) in TABLE {
            let resonance = analyze(message);
            let routing = route(&resonance);
            assert_eq!(resonance.key(), *key, "key for {message:?}");
            assert_eq!(routing.persona.name(), *persona, "persona for {message:?}");
            assert_eq!(
                routing.confidence, *confidence,
                "confidence for {message:?}"
            );
        }
    }

    #[test]
    fn ties_go_to_the_earlier_persona() {
        // calm-burst-statement: Elro and Riri both prefer calm: Elro 0.5+0.1+0.1, Riri
        // 0.5+0.1+0.2 → Riri. Flip the intent to inquiry: Elro 0.8, Riri 0.7.
        let mut r = analyze("ok. fine. sure.");
        assert_eq!(r.key(), "calm-burst-statement");
        assert_eq!(route(&r).persona, Persona::Riri);
        r.intent = Intent::Expressive;
        // Elro 0.5+0.1+0.1 = 0.7 and Riri 0.5+0.1+0.1 = 0.7: Elro comes first.
        let routing = route(&r);
        assert_eq!(routing.persona, Persona::Elro);
        assert_eq!(routing.secondary, Persona::Riri);
        assert_eq!(routing.confidence, 0.7);
    }

    #[test]
    fn reasoning_explains_the_score() {
        let routing = route(&analyze("어떻게 해야 하나요?"));
        assert!(
            routing.reasoning.contains("tone 'curious'"),
            "{}",
            routing.reasoning
        );
        assert!(routing.reasoning.contains("intent 'inquiry' +0.2"));
        assert_eq!(routing.secondary, Persona::Riri);
    }

    #[test]
    fn system_instruction_names_the_persona_and_key() {
        let r = analyze("어떻게 해야 하나요?");
        let text = Persona::Elro.system_instruction(&r);
        assert!(text.contains("Elro"));
        assert!(text.contains("curious-burst-inquiry"));
        assert!(text.contains("user wrote in"));
    }
}
