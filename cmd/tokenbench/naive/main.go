// Command naive is the reference tokenbench measures tokensvc against: the
// token service anyone would write first, on tokensvc's own stack (Echo v4,
// go-redis v9 with its defaults, google/uuid). One SET … EX per mint, one
// GET per verify, the partner key compared in constant time; no logging,
// no metrics, nothing else. It is not a product: tokens are stored in
// clear, uses are not counted, nothing can be revoked.
//
//	naive -addr 127.0.0.1:8090 -redis 127.0.0.1:6379 -key <partner key>
package main

import (
	"crypto/subtle"
	"errors"
	"flag"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	key := flag.String("key", "", "the partner key /generate wants in x-api-key")
	flag.Parse()
	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr})
	e := echo.New()
	e.HideBanner = true
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.POST("/generate", func(c echo.Context) error {
		if subtle.ConstantTimeCompare([]byte(c.Request().Header.Get("x-api-key")), []byte(*key)) != 1 {
			return c.JSON(http.StatusUnauthorized, map[string]string{"error": "invalid_api_key"})
		}
		bundle, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		token, err := uuid.NewRandom()
		if err != nil {
			return err
		}
		if err := rdb.Set(c.Request().Context(), "t:"+token.String(), bundle, time.Hour).Err(); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"token": token.String(), "expires_in": 3600})
	})
	e.GET("/verify", func(c echo.Context) error {
		bundle, err := rdb.Get(c.Request().Context(), "t:"+c.Request().Header.Get("x-api-token")).Bytes()
		if errors.Is(err, redis.Nil) {
			return c.JSON(http.StatusForbidden, map[string]string{"error": "invalid_token"})
		}
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, bundle)
	})
	e.Logger.Fatal(e.Start(*addr))
}
