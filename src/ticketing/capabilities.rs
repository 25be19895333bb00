//! What a backend can write: not every helpdesk has every field of the normalized model
//! (Intercom tickets have no priority, ServiceNow incidents no tags), and a caller that knows
//! can leave such a field alone with a reason instead of failing the whole update.

use std::fmt;

/// A field of [`super::TicketPatch`] a backend may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketField {
    /// `priority`.
    Priority,
    /// `category_id`.
    Category,
    /// `tags`.
    Tags,
    /// `user_id` (the assignee).
    Assignee,
}

impl TicketField {
    /// The field's name in the normalized model's words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Priority => "priority",
            Self::Category => "category",
            Self::Tags => "tags",
            Self::Assignee => "assignee",
        }
    }
}

impl fmt::Display for TicketField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields a backend does not support, each with the reason; everything else is supported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    unsupported: Vec<(TicketField, &'static str)>,
}

impl Capabilities {
    /// Every field supported.
    pub fn all() -> Self {
        Self::default()
    }

    /// The same, with `field` unsupported because `why` (said to whoever reads the logs).
    #[must_use]
    pub fn without(mut self, field: TicketField, why: &'static str) -> Self {
        self.unsupported.retain(|(f, _)| *f != field);
        self.unsupported.push((field, why));
        self
    }

    /// Why `field` is not supported; `None` when it is.
    pub fn unsupported(&self, field: TicketField) -> Option<&'static str> {
        self.unsupported.iter().find(|(f, _)| *f == field).map(|(_, why)| *why)
    }

    /// Whether `field` can be written.
    pub fn supports(&self, field: TicketField) -> bool {
        self.unsupported(field).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_supported_unless_said_otherwise() {
        let all = Capabilities::all();
        assert!(
            [TicketField::Priority, TicketField::Category, TicketField::Tags, TicketField::Assignee]
                .iter()
                .all(|f| all.supports(*f))
        );
        let caps = all
            .without(TicketField::Priority, "first")
            .without(TicketField::Priority, "tickets have no priority");
        assert_eq!(caps.unsupported(TicketField::Priority), Some("tickets have no priority"));
        assert!(caps.supports(TicketField::Tags));
    }
}
