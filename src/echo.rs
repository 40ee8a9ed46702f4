//! TODO(owner): filled by its module owner.
