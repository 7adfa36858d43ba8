package nacos

import (
	"fmt"
	"regexp"
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
	if c := caddy.Log().Named("nacos.sdk").Check(zapcore.DebugLevel, "message redacted"); c != nil {
		c.Message = redactSecrets(msg)
		c.Write(zap.String("sdk_level", level))
	}
}

// Secrets the SDK writes into its debug and error logs: the access token,
// or the access key and the request signature made with the secret key, in
// every gRPC request's headers (printed as protobuf text or a Go map), and
// HTTP form parameters such as password (printed as JSON).
const secretNames = `accessToken|password|secretKey|secret_key|accessKey|access_key|ak|Spas-AccessKey|Spas-SecurityToken|Spas-Signature|signature`

var (
	secretProtoField = regexp.MustCompile(`(?i)(key:\s*"(?:` + secretNames + `)"\s+value:\s*)"(?:[^"\\]|\\.)*"`)
	secretField      = regexp.MustCompile(`(?i)("?\b(?:` + secretNames + `)"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|[^\s,\]}&"]+)`)
)

// redactSecrets replaces the values of secret fields in an SDK log message.
func redactSecrets(msg string) string {
	msg = secretProtoField.ReplaceAllString(msg, `$1"REDACTED"`)
	return secretField.ReplaceAllString(msg, `${1}REDACTED`)
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
// lists into some messages. (A named logger has its parent's core: asking
// the parent costs no copy of the logger.)
func (l sdkLogger) logf(level, format string, a []any) {
	if !caddy.Log().Core().Enabled(zapcore.DebugLevel) {
		return
	}
	l.log(level, fmt.Sprintf(format, a...))
}

// Interface guards
var _ logger.Logger = sdkLogger{}
