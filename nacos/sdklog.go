package nacos

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/common/logger"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// redirectSDKLogs sends nacos-sdk-go's logs to Caddy's logger "nacos.sdk"
// instead of files in the working directory. The SDK logger is process-global
// and the first one set wins, so this happens once, before any client exists.
//
// The SDK logs every retry and every instance list at info level or above;
// Caddy's own "nacos" logger reports each distinct problem once. So all SDK
// messages are logged at debug level: enable it for "nacos.sdk" to see them.
var redirectSDKLogs = sync.OnceFunc(func() { logger.SetLogger(sdkLogger{}) })

// sdkLogger adapts Caddy's current default logger (which a reload may
// replace) to the SDK's Logger interface.
type sdkLogger struct{}

func (sdkLogger) log(level string, msg string) {
	if c := caddy.Log().Named("nacos.sdk").Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(zap.String("sdk_level", level))
	}
}

func (l sdkLogger) Info(args ...any)               { l.log("info", fmt.Sprint(args...)) }
func (l sdkLogger) Warn(args ...any)               { l.log("warn", fmt.Sprint(args...)) }
func (l sdkLogger) Error(args ...any)              { l.log("error", fmt.Sprint(args...)) }
func (l sdkLogger) Debug(args ...any)              { l.log("debug", fmt.Sprint(args...)) }
func (l sdkLogger) Infof(format string, a ...any)  { l.logf("info", format, a) }
func (l sdkLogger) Warnf(format string, a ...any)  { l.logf("warn", format, a) }
func (l sdkLogger) Errorf(format string, a ...any) { l.logf("error", format, a) }
func (l sdkLogger) Debugf(format string, a ...any) { l.logf("debug", format, a) }
func (sdkLogger) Close() error                     { return nil }

// logf formats only when debug logging is on: the SDK formats whole instance
// lists into some messages.
func (l sdkLogger) logf(level, format string, a []any) {
	if !caddy.Log().Named("nacos.sdk").Core().Enabled(zapcore.DebugLevel) {
		return
	}
	l.log(level, fmt.Sprintf(format, a...))
}

// Interface guards
var _ logger.Logger = sdkLogger{}
