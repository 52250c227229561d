package pop3d

// Connections reports how many connections the server holds now, across
// its listeners (for the metrics).
func (s *Server) Connections() int { return s.tracker.Len() }
