package engine

import "log/slog"

// logger is a thin wrapper so call sites stay short.
type logger struct{ l *slog.Logger }

func (g logger) debug(msg string, args ...any) { g.l.Debug(msg, args...) }
func (g logger) info(msg string, args ...any)  { g.l.Info(msg, args...) }
func (g logger) error(msg string, args ...any) { g.l.Error(msg, args...) }
