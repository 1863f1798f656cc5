package tracker

import "fmt"

// Event is the announce event a client reports to the tracker (BEP 3).
type Event uint8

// The announce events. EventNone is a regular re-announce.
const (
	EventNone Event = iota
	EventStarted
	EventCompleted
	EventStopped
)

// String returns the event as it is spelled in the announce query; the
// regular re-announce is the empty string.
func (e Event) String() string {
	switch e {
	case EventNone:
		return ""
	case EventStarted:
		return "started"
	case EventCompleted:
		return "completed"
	case EventStopped:
		return "stopped"
	default:
		return fmt.Sprintf("Event(%d)", uint8(e))
	}
}

// ParseEvent parses the event parameter of an announce query. The empty
// string is a regular announce. "paused" (BEP 21, sent by some clients for
// partial seeds) is treated as a regular announce too, because the tracker
// has nothing extra to do for it.
func ParseEvent(s string) (Event, error) {
	switch s {
	case "", "empty", "paused":
		return EventNone, nil
	case "started":
		return EventStarted, nil
	case "completed":
		return EventCompleted, nil
	case "stopped":
		return EventStopped, nil
	default:
		return EventNone, fmt.Errorf("unknown event %q", s)
	}
}
