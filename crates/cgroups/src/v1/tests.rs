use super::*;
use crate::fake::FakeHarness;
