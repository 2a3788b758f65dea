//! Carrier simulator, agent simulator and the load driver with its report.
//! Filled by later issues.
