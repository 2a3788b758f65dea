//! Attended transfer, pure: the agent consults a third party while the customer holds,
//! may swap between the two, then completes (customer and third party are joined and the
//! agent leaves) or cancels (back to the customer). Each move is a list of media steps for
//! the shell to carry out on the customer's, the agent's and the third party's legs.

/// One of the two people the agent can be talking with during a consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Customer,
    Consulted,
}

/// Where the third party is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A number, dialled over the customer's campaign trunk.
    Number(String),
    /// A registered phone (its registrar account): a colleague, a supervisor.
    Phone(String),
    /// Another agent, through the router (their persistent session, or a call to their
    /// phone); completing hands them the customer.
    Agent(u32),
}

impl Target {
    /// What a REFER's `Refer-To` names: `<sip:+8613900000001@host>` is a number, and a user
    /// with letters is a registered phone. None for what is neither.
    pub fn from_refer_to(refer_to: &str) -> Option<Target> {
        let uri = refer_to.trim().trim_start_matches('<');
        let uri = uri.split(['>', ';', '?']).next()?;
        let rest =
            uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:")).or_else(|| uri.strip_prefix("tel:"))?;
        let user = rest.split('@').next()?;
        if user.is_empty() {
            return None;
        }
        let number = user.trim_start_matches('+');
        if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) {
            return Some(Target::Number(user.to_string()));
        }
        user.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)).then(|| Target::Phone(user.to_string()))
    }
}

/// What the shell does to the legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `Party` hears music and is heard by nobody (its bridge is taken down).
    Hold(Party),
    /// `Party`'s music stops.
    Resume(Party),
    /// The agent talks with `Party`.
    Bridge(Party),
    /// The customer and the third party talk; the agent's leg leaves the call.
    Join,
    HangUpConsulted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consult {
    /// The third party's phone is being called.
    Dialling,
    /// The agent talks with this party; the other holds.
    Talking(Party),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("the consulted party has not answered yet")]
    NotAnswered,
    #[error("the agent is not talking with a customer")]
    NotOnCall,
    #[error("a consultation is already under way")]
    Busy,
    #[error("no consultation is under way")]
    NoConsult,
    #[error("{0:?} has no registered phone")]
    NoPhone(String),
    #[error("the customer's campaign has no trunk to dial a number over")]
    NoTrunk,
    #[error("a blind transfer to an agent names it with to_agent")]
    AgentIsNotATarget,
}

impl Consult {
    /// Starts a consultation: the customer holds while the third party is called.
    pub fn start() -> (Consult, Vec<Step>) {
        (Consult::Dialling, vec![Step::Hold(Party::Customer)])
    }

    /// The third party answered: the agent talks with them.
    pub fn answered(&mut self) -> Vec<Step> {
        match self {
            Consult::Dialling => {
                *self = Consult::Talking(Party::Consulted);
                vec![Step::Bridge(Party::Consulted)]
            }
            Consult::Talking(_) => vec![],
        }
    }

    /// The agent goes back to the one who holds.
    pub fn swap(&mut self) -> Vec<Step> {
        let Consult::Talking(with) = *self else { return vec![] };
        let other = match with {
            Party::Customer => Party::Consulted,
            Party::Consulted => Party::Customer,
        };
        *self = Consult::Talking(other);
        vec![Step::Hold(with), Step::Resume(other), Step::Bridge(other)]
    }

    /// Customer and third party are joined; the agent leaves.
    pub fn complete(self) -> Result<Vec<Step>, TransferError> {
        match self {
            Consult::Dialling => Err(TransferError::NotAnswered),
            Consult::Talking(_) => Ok(vec![Step::Resume(Party::Customer), Step::Resume(Party::Consulted), Step::Join]),
        }
    }

    /// The consultation is called off: the third party is hung up and the agent is back
    /// with the customer.
    pub fn cancel(self) -> Vec<Step> {
        // The third party goes last: the customer's steps need it still known.
        vec![Step::Resume(Party::Customer), Step::Bridge(Party::Customer), Step::HangUpConsulted]
    }

    /// The third party hung up (or never answered): back to the customer.
    pub fn consulted_gone(self) -> Vec<Step> {
        vec![Step::Resume(Party::Customer), Step::Bridge(Party::Customer)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Party::*;

    #[test]
    fn consult_swap_and_complete() {
        let (mut c, steps) = Consult::start();
        assert_eq!(steps, [Step::Hold(Customer)]);
        assert_eq!(c.swap(), [], "nobody to swap to while it rings");
        assert_eq!(c.answered(), [Step::Bridge(Consulted)]);
        assert_eq!(c.answered(), [], "a second answer changes nothing");
        assert_eq!(c.swap(), [Step::Hold(Consulted), Step::Resume(Customer), Step::Bridge(Customer)]);
        assert_eq!(c.swap(), [Step::Hold(Customer), Step::Resume(Consulted), Step::Bridge(Consulted)]);
        assert_eq!(c.complete(), Ok(vec![Step::Resume(Customer), Step::Resume(Consulted), Step::Join]));
    }

    #[test]
    fn complete_needs_an_answer_and_cancel_or_a_lost_party_returns_to_the_customer() {
        let (c, _) = Consult::start();
        assert_eq!(c.complete(), Err(TransferError::NotAnswered));
        assert_eq!(c.cancel(), [Step::Resume(Customer), Step::Bridge(Customer), Step::HangUpConsulted]);
        let (mut c, _) = Consult::start();
        c.answered();
        assert_eq!(c.consulted_gone(), [Step::Resume(Customer), Step::Bridge(Customer)]);
    }

    #[test]
    fn refer_to_names_a_number_or_a_phone() {
        assert_eq!(
            Target::from_refer_to("<sip:+8613900000001@127.0.0.1:5060;user=phone>"),
            Some(Target::Number("+8613900000001".into()))
        );
        assert_eq!(Target::from_refer_to("sip:agent2@10.0.0.1"), Some(Target::Phone("agent2".into())));
        assert_eq!(Target::from_refer_to("tel:10086"), Some(Target::Number("10086".into())));
        assert_eq!(Target::from_refer_to("<http://example.com>"), None);
        assert_eq!(Target::from_refer_to("<sip:@host>"), None);
        assert_eq!(Target::from_refer_to("sip:bad user@host"), None);
    }
}
