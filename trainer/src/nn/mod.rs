//! Neural-network core (filled in by the nn work).
